"""Dagster resources: where tables live, where flows come from, and the Elasticsearch cluster.

All of them read their deployment-specific values from the environment (`EnvVar`), so the same
definitions run against the local node and a production cluster; secrets never reach logs or
metadata (`safe_url`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from dagster import ConfigurableResource, EnvVar
from elasticsearch import Elasticsearch
from pydantic import Field

from flows_pipeline.bulk_sender import BulkRetry
from flows_pipeline.es_connection import ConnectionSettings, connect, safe_url
from flows_pipeline.flow_sources import SOURCE_KINDS, SourceSettings
from flows_pipeline.index_lifecycle import IndexLayout
from flows_pipeline.partitions import Hour


class FlowStorage(ConfigurableResource):
    """Parquet tables, one file per asset and hour: <root>/<asset>/<YYYY-MM-DD>/<HH>.parquet"""

    root: str = Field(default=".flows_data", description="Folder of all tables (FLOWS_STORAGE_ROOT).")
    row_group_rows: int = Field(
        default=65_536,
        description="Rows per Parquet row group: the unit a chunk is made of, and what a reader holds at once.",
    )

    def table_path(self, asset: str, hour: Hour) -> Path:
        return Path(self.root).resolve() / asset / hour.start.strftime("%Y-%m-%d") / f"{hour.start:%H}.parquet"


class FlowSource(ConfigurableResource):
    """Where `raw_flows` reads an hour from (flow_sources.py)."""

    kind: str = Field(default="synthetic", description="synthetic | nfcapd | goflow2 | csv (FLOWS_SOURCE).")
    root: str | None = Field(default=None, description="Folder of the collector's files (FLOWS_SOURCE_ROOT).")
    lag_minutes: int = Field(
        default=15, description="Files named up to this long after the hour are read for it (FLOWS_SOURCE_LAG_MINUTES)."
    )
    on_bad_file: str = Field(default="fail", description="fail | skip an unreadable file (FLOWS_BAD_FILES).")
    on_empty_hour: str = Field(default="fail", description="fail | empty when an hour has no files (FLOWS_EMPTY_HOUR).")
    synthetic_rows_per_hour: int = Field(
        default=100_000, description="Flows per synthetic hour (FLOWS_SYNTHETIC_ROWS)."
    )

    def settings(self) -> SourceSettings:
        for name, value, allowed in (
            ("kind", self.kind, SOURCE_KINDS),
            ("on_bad_file", self.on_bad_file, ("fail", "skip")),
            ("on_empty_hour", self.on_empty_hour, ("fail", "empty")),
        ):
            if value not in allowed:
                raise ValueError(f"flow source {name} is {value!r}; one of {allowed}")
        return SourceSettings(
            kind=self.kind,
            root=Path(self.root).resolve() if self.root else None,
            lag=timedelta(minutes=self.lag_minutes),
            skip_bad_files=self.on_bad_file == "skip",
            empty_hour_ok=self.on_empty_hour == "empty",
            synthetic_rows=self.synthetic_rows_per_hour,
        )


class FlowsElasticsearch(ConfigurableResource):
    """The cluster the flow index lives in, and how its hourly indices are laid out and loaded."""

    url: str = Field(default="http://127.0.0.1:9200", description="ES_URL; the local node by default.")
    api_key: str | None = Field(default=None, description="ES_API_KEY (preferred for real clusters).")
    username: str | None = Field(default=None, description="ES_USERNAME, with ES_PASSWORD.")
    password: str | None = Field(default=None, description="ES_PASSWORD.")
    ca_certs: str | None = Field(default=None, description="ES_CA_CERTS: CA bundle for a TLS cluster.")
    verify_certs: bool = Field(default=True, description="Verify the cluster's TLS certificate.")
    request_timeout_s: float = Field(default=120.0, description="Timeout of one request (a bulk body).")
    index_prefix: str = Field(default="flows", description="Read alias; hourly aliases are <prefix>-YYYY.MM.DD-HH.")
    shards: int = Field(default=1, description="Primary shards per hourly index.")
    replicas: int = Field(default=0, description="Replicas once an hour is published (none while loading).")
    bulk_max_bytes: int = Field(default=5 * 1024 * 1024, description="Cap of one bulk request body, in bytes.")
    bulk_max_docs: int = Field(default=10_000, description="Cap of documents in one bulk request.")
    max_in_flight: int = Field(default=2, description="Bulk requests one index_chunk step has in flight at once.")
    max_retries: int = Field(default=8, description="Retries of a bulk body or its 429'd items (backoff with jitter).")
    max_row_groups_per_chunk: int = Field(
        default=32,
        description=(
            "Most row groups one index_chunk step loads (32 x 65,536 rows, ~30 s of work to redo on a retry). "
            "An hour gets one chunk per index_chunk step the run executes at once (es_bulk_steps), more only "
            "beyond this cap."
        ),
    )
    tolerated_item_errors: int = Field(
        default=0, description="Documents Elasticsearch may reject per hour before the run fails (counted either way)."
    )

    def connection(self) -> ConnectionSettings:
        return ConnectionSettings(
            url=self.url,
            api_key=self.api_key,
            username=self.username,
            password=self.password,
            ca_certs=self.ca_certs,
            verify_certs=self.verify_certs,
            request_timeout_s=self.request_timeout_s,
        )

    def connect(self) -> Elasticsearch:
        return connect(self.connection())

    @property
    def safe_url(self) -> str:
        return safe_url(self.url)

    @property
    def layout(self) -> IndexLayout:
        return IndexLayout(prefix=self.index_prefix, shards=self.shards, replicas=self.replicas)

    @property
    def retry(self) -> BulkRetry:
        return BulkRetry(max_retries=self.max_retries)


def _from_env(environ: Mapping[str, str], names: dict[str, tuple[str, type]]) -> dict:
    """Resource fields for the environment variables that are set, as EnvVar (never a copied value)."""
    fields = {}
    for field_name, (var, kind) in names.items():
        if environ.get(var):
            fields[field_name] = EnvVar.int(var) if kind is int else EnvVar(var)
    return fields


def _elasticsearch_fields(environ: Mapping[str, str]) -> dict:
    # the local node on another port (scripts/es.sh honours ES_PORT too), unless ES_URL names a cluster
    fields: dict = {"url": f"http://127.0.0.1:{environ['ES_PORT']}"} if environ.get("ES_PORT") else {}
    fields |= _from_env(
        environ,
        {
            "url": ("ES_URL", str),
            "api_key": ("ES_API_KEY", str),
            "username": ("ES_USERNAME", str),
            "password": ("ES_PASSWORD", str),
            "ca_certs": ("ES_CA_CERTS", str),
            "index_prefix": ("FLOWS_INDEX_PREFIX", str),
            "replicas": ("FLOWS_INDEX_REPLICAS", int),
            "max_row_groups_per_chunk": ("FLOWS_MAX_ROW_GROUPS_PER_CHUNK", int),
            "bulk_max_bytes": ("FLOWS_BULK_MAX_BYTES", int),
            "bulk_max_docs": ("FLOWS_BULK_MAX_DOCS", int),
            "max_in_flight": ("FLOWS_BULK_IN_FLIGHT", int),
        },
    )
    return fields


def resources_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, ConfigurableResource]:
    """The deployment's resources: defaults for a local run, overridden by what the environment sets.

    Values are passed as `EnvVar`, so Dagster reads them when a step starts and the UI shows
    the variable's name rather than a password.
    """
    if environ.get("FLOWS_ROW_GROUPS_PER_CHUNK"):
        warnings.warn(
            "FLOWS_ROW_GROUPS_PER_CHUNK is no longer read: an hour now gets one chunk per index_chunk step the "
            "run executes at once (es_bulk_steps), each at most FLOWS_MAX_ROW_GROUPS_PER_CHUNK row groups",
            stacklevel=2,
        )
    return {
        "storage": FlowStorage(
            **_from_env(environ, {"root": ("FLOWS_STORAGE_ROOT", str), "row_group_rows": ("FLOWS_ROW_GROUP_ROWS", int)})
        ),
        "source": FlowSource(
            **_from_env(
                environ,
                {
                    "kind": ("FLOWS_SOURCE", str),
                    "root": ("FLOWS_SOURCE_ROOT", str),
                    "lag_minutes": ("FLOWS_SOURCE_LAG_MINUTES", int),
                    "on_bad_file": ("FLOWS_BAD_FILES", str),
                    "on_empty_hour": ("FLOWS_EMPTY_HOUR", str),
                    "synthetic_rows_per_hour": ("FLOWS_SYNTHETIC_ROWS", int),
                },
            )
        ),
        "es": FlowsElasticsearch(**_elasticsearch_fields(environ)),
    }


def resolved_resources(environ: Mapping[str, str] = os.environ) -> dict[str, ConfigurableResource]:
    """The same resources with their EnvVars read now: for scripts and tests outside a Dagster run."""
    return {key: resource.process_config_and_initialize() for key, resource in resources_from_env(environ).items()}
