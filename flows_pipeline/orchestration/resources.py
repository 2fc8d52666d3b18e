"""Dagster resources: where tables live, where flows come from, and the Elasticsearch cluster.

This is the one home of every default: the domain's settings classes (SourceSettings,
ConnectionSettings, IndexLayout, BulkRetry, BulkLimits) take required fields, built here.
Deployment-specific values come from the environment: secrets and URLs as `EnvVar`, read when
a step starts, so the UI shows the variable's name rather than a password; choices (the source
kind, the file policies) as their values, checked against the allowed ones when the definitions
load, so a wrong value fails before any work and names what is allowed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from dagster import ConfigurableResource, EnvVar
from elasticsearch import Elasticsearch
from pydantic import Field

from flows_pipeline.errors import ConfigurationError
from flows_pipeline.es.bulk_sender import BulkRetry
from flows_pipeline.es.chunk_loading import BulkLimits
from flows_pipeline.es.connection import ConnectionSettings, connect, safe_url
from flows_pipeline.es.index_layout import BucketSpan, IndexLayout
from flows_pipeline.exporter_health import ExporterHealthSettings
from flows_pipeline.hour import Hour
from flows_pipeline.orchestration.step_values import StepValues
from flows_pipeline.sources.source_reader import SourceKind, SourceSettings
from flows_pipeline.sources.time_units import TimeUnit
from flows_pipeline.tables.normalizer import NormalizeOptions
from flows_pipeline.tables.table_store import TableLocation, is_s3, join, normalized_root

DEFAULT_SOURCE_LAG_MINUTES = 15  # late flows of a closed hour arrive in the minutes after it (nfcapd rotates every 5)
# an hour is late once unpublished this long after its scheduled run started: the incident's hour
# loads in ~2 min, and queued runs, retries and a slow cluster get the rest
DEFAULT_FRESHNESS_MARGIN_MINUTES = 30


# an hour's table folders under the storage root -> the asset whose partition materializes them
TABLE_FOLDERS = {
    "raw_flows": "raw_flows",
    "raw_quarantine": "raw_flows",
    "flow_table": "flow_table",
    "flow_quarantine": "flow_quarantine",
    "flow_summary": "flow_summary",
}


class FlowStorage(ConfigurableResource):
    """Parquet tables, one file per asset and hour: <root>/<asset>/<YYYY-MM-DD>/<HH>.parquet"""

    root: str = Field(
        default=".flows_data",
        description=(
            "Folder of all tables, or s3://bucket/prefix on S3-compatible storage (FLOWS_STORAGE_ROOT; endpoint, "
            "region and credentials from the environment: README, 'Tables on S3')."
        ),
    )
    row_group_rows: int = Field(
        default=65_536,
        description="Rows per Parquet row group: the unit a chunk is made of, and what a reader holds at once.",
    )
    community_id: bool = Field(
        default=False,
        description=(
            "Compute network.community_id in flow_table (FLOWS_COMMUNITY_ID=true): ~0.5 s of one core per "
            "million flows, which would take flow_table below 1M rows/s; off by default (README, 'Community ID')."
        ),
    )

    @property
    def root_location(self) -> TableLocation:
        """The absolute folder, or the s3:// URI; ConfigurationError for an S3 root without a bucket."""
        return normalized_root(self.root)

    def table_path(self, asset: str, hour: Hour) -> TableLocation:
        """A Path under a local root, an s3://bucket/key string under an S3 one (tables/table_store.py)."""
        return join(self.root_location, asset, hour.start.strftime("%Y-%m-%d"), f"{hour.start:%H}.parquet")


class FlowRetention(ConfigurableResource):
    """How long hours are kept (orchestration/retention_job.py)."""

    days: int = Field(
        default=30,
        description=(
            "Days an hour is kept after its end, UTC wall-clock time (FLOWS_RETENTION_DAYS); 0 keeps everything. "
            "Buckets go once all their hours have: with week buckets up to a week more is kept."
        ),
    )


class FlowSource(ConfigurableResource):
    """Where `raw_flows` reads an hour from (sources/source_reader.py)."""

    kind: SourceKind = Field(default="synthetic", description="Which collector's files, or synthetic (FLOWS_SOURCE).")
    root: str | None = Field(default=None, description="Folder of the collector's files (FLOWS_SOURCE_ROOT).")
    lag_minutes: int = Field(
        default=DEFAULT_SOURCE_LAG_MINUTES,
        ge=0,
        description=(
            "Files named up to this long after the hour are read for it (FLOWS_SOURCE_LAG_MINUTES); the "
            "schedule runs this long after each hour."
        ),
    )
    on_bad_file: Literal["fail", "skip"] = Field(
        default="fail", description="What an unreadable file does to the run (FLOWS_BAD_FILES)."
    )
    on_empty_hour: Literal["fail", "empty"] = Field(
        default="fail", description="What an hour without files does: fail, or index it as empty (FLOWS_EMPTY_HOUR)."
    )
    synthetic_rows_per_hour: int = Field(
        default=100_000, description="Flows per synthetic hour (FLOWS_SYNTHETIC_ROWS)."
    )
    time_unit: TimeUnit = Field(
        default="ns",
        description=(
            "Unit of the numeric times in GoFlow2 and CSV files: ns (GoFlow2's), us, ms or s "
            "(FLOWS_SOURCE_TIME_UNIT). nfcapd times are read as nfdump prints them."
        ),
    )

    exporter_lookback_hours: int = Field(
        default=3,
        ge=1,
        description=(
            "An exporter that sent flows in any of this many previous hours and none in this one warns "
            "(flow_summary's exporters_reporting check; FLOWS_EXPORTER_LOOKBACK_HOURS)."
        ),
    )
    min_hour_volume_fraction: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description=(
            "An hour with fewer flows than this fraction of the same hour's median over the previous 7 days warns "
            "(flow_summary's hour_volume check; FLOWS_MIN_HOUR_VOLUME_FRACTION); 0 turns the check off."
        ),
    )

    @property
    def numeric_time_unit(self) -> TimeUnit:
        """The unit the source's times were written in: the configured one where it applies."""
        return self.time_unit if self.kind in ("goflow2", "csv") else "ns"

    def normalize_options(self, community_id: bool) -> NormalizeOptions:
        return NormalizeOptions(time_unit=self.numeric_time_unit, community_id=community_id)

    def exporter_health(self) -> ExporterHealthSettings:
        return ExporterHealthSettings(
            lookback_hours=self.exporter_lookback_hours, min_volume_fraction=self.min_hour_volume_fraction
        )

    def settings(self) -> SourceSettings:
        return SourceSettings(
            kind=self.kind,
            root=Path(self.root).resolve() if self.root else None,
            lag=timedelta(minutes=self.lag_minutes),
            skip_bad_files=self.on_bad_file == "skip",
            empty_hour_ok=self.on_empty_hour == "empty",
            synthetic_rows=self.synthetic_rows_per_hour,
            time_unit=self.numeric_time_unit,
        )


class FlowsElasticsearch(ConfigurableResource):
    """The cluster the flow index lives in, and how its hourly indices are laid out and loaded."""

    url: str = Field(
        default="http://127.0.0.1:9200",
        description=(
            "ES_URL: a node's URL, or several separated by commas (a list takes no credentials); the local node "
            "by default."
        ),
    )
    api_key: str | None = Field(default=None, description="ES_API_KEY (preferred for real clusters).")
    username: str | None = Field(default=None, description="ES_USERNAME, with ES_PASSWORD.")
    password: str | None = Field(default=None, description="ES_PASSWORD.")
    ca_certs: str | None = Field(default=None, description="ES_CA_CERTS: CA bundle for a TLS cluster.")
    verify_certs: bool = Field(default=True, description="Verify the cluster's TLS certificate.")
    request_timeout_s: float = Field(default=120.0, description="Timeout of one request (a bulk body), s.")
    index_prefix: str = Field(default="flows", description="Read alias; hourly aliases are <prefix>-YYYY.MM.DD-HH.")
    bucket: BucketSpan = Field(
        default="day",
        description=(
            "Hours that share one index (FLOWS_INDEX_BUCKET): day, or week for small sites. Sizing rule in "
            "es/index_layout.py: a shard per ~200M flows or ~40 GB."
        ),
    )
    shards: int = Field(default=1, description="Primary shards per bucket index (FLOWS_INDEX_SHARDS).")
    replicas: int = Field(default=0, description="Replicas of every bucket index (FLOWS_INDEX_REPLICAS).")
    bulk_max_bytes: int = Field(default=5 * 1024 * 1024, description="Cap of one bulk request body, bytes.")
    bulk_max_docs: int = Field(default=10_000, description="Cap of documents in one bulk request.")
    max_in_flight: int = Field(
        default=2,
        description=(
            "Bulk requests one index_chunk step has in flight at once; the cluster sees this times the "
            "chunk steps loading at once: about two per data node core (README, Concurrency)."
        ),
    )
    delete_in_flight: int = Field(
        default=4,
        ge=1,
        description=(
            "Bulk delete requests in flight while a re-run deletes the attempt it replaced, on a cluster "
            "without _delete_by_query (FLOWS_DELETE_IN_FLIGHT); with it, the cluster slices the deletion per shard."
        ),
    )
    max_retries: int = Field(
        default=8, description="Resends of a body refused for a transient reason, or of its throttled items."
    )
    retry_initial_backoff_s: float = Field(
        default=0.5, description="First wait before a resend, s; doubled each time, with full jitter."
    )
    retry_max_backoff_s: float = Field(default=30.0, description="Longest wait before a resend, s.")
    bulk_shard_wait_s: float = Field(
        default=60.0,
        description=(
            "How long one bulk request waits for a primary shard that is not active (the bulk API's `timeout`, "
            "Elasticsearch's default 1m), s: a primary whose node restarts within it is waited for; past it, a "
            "red index fails the step naming the index and its missing node. Less than request_timeout_s."
        ),
    )
    max_row_groups_per_chunk: int = Field(
        default=32,
        description=(
            "Most row groups one index_chunk step loads (32 x 65,536 rows, ~30 s of work to redo on a retry). "
            "An hour gets one chunk per index_chunk step the run executes at once (es_bulk_steps), more only "
            "beyond this cap."
        ),
    )
    tolerated_item_errors: int = Field(
        default=0,
        description="Documents Elasticsearch may reject per hour before the run fails (counted either way).",
    )
    expiry_warn_days: int = Field(
        default=14,
        description=(
            "Days before the API key or the TLS certificate expires from which each load warns and an alert is "
            "sent (FLOWS_EXPIRY_WARN_DAYS; es/credentials_expiry.py)."
        ),
    )

    def connection(self) -> ConnectionSettings:
        return ConnectionSettings(
            url=self.url,
            request_timeout_s=self.request_timeout_s,
            api_key=self.api_key,
            username=self.username,
            password=self.password,
            ca_certs=self.ca_certs,
            verify_certs=self.verify_certs,
        )

    def connect(self) -> Elasticsearch:
        return connect(self.connection())

    @property
    def safe_url(self) -> str:
        return safe_url(self.url)

    @property
    def layout(self) -> IndexLayout:
        return IndexLayout(prefix=self.index_prefix, bucket=self.bucket, shards=self.shards, replicas=self.replicas)

    @property
    def retry(self) -> BulkRetry:
        return BulkRetry(
            max_retries=self.max_retries,
            initial_backoff_s=self.retry_initial_backoff_s,
            max_backoff_s=self.retry_max_backoff_s,
            shard_wait_s=self.bulk_shard_wait_s,
        )

    @property
    def limits(self) -> BulkLimits:
        return BulkLimits(max_bytes=self.bulk_max_bytes, max_docs=self.bulk_max_docs, max_in_flight=self.max_in_flight)


# environment variable -> (resource field, how it is passed): "env" as an EnvVar read when a step
# starts (URLs, secrets, sizes), "value" as the value itself (choices, validated when loaded)
_STORAGE_ENV = {
    "FLOWS_STORAGE_ROOT": ("root", "env"),
    "FLOWS_ROW_GROUP_ROWS": ("row_group_rows", "int"),
    "FLOWS_COMMUNITY_ID": ("community_id", "value"),
}
_RETENTION_ENV = {"FLOWS_RETENTION_DAYS": ("days", "int")}
_SOURCE_ENV = {
    "FLOWS_SOURCE": ("kind", "value"),
    "FLOWS_SOURCE_ROOT": ("root", "env"),
    "FLOWS_SOURCE_LAG_MINUTES": ("lag_minutes", "value_int"),
    "FLOWS_BAD_FILES": ("on_bad_file", "value"),
    "FLOWS_EMPTY_HOUR": ("on_empty_hour", "value"),
    "FLOWS_SYNTHETIC_ROWS": ("synthetic_rows_per_hour", "int"),
    "FLOWS_SOURCE_TIME_UNIT": ("time_unit", "value"),
    "FLOWS_EXPORTER_LOOKBACK_HOURS": ("exporter_lookback_hours", "value_int"),
    "FLOWS_MIN_HOUR_VOLUME_FRACTION": ("min_hour_volume_fraction", "value_float"),
}
_ELASTICSEARCH_ENV = {
    "ES_URL": ("url", "env"),
    "ES_API_KEY": ("api_key", "env"),
    "ES_USERNAME": ("username", "env"),
    "ES_PASSWORD": ("password", "env"),
    "ES_CA_CERTS": ("ca_certs", "env"),
    "FLOWS_INDEX_PREFIX": ("index_prefix", "env"),
    "FLOWS_INDEX_BUCKET": ("bucket", "value"),
    "FLOWS_INDEX_SHARDS": ("shards", "int"),
    "FLOWS_INDEX_REPLICAS": ("replicas", "int"),
    "FLOWS_MAX_ROW_GROUPS_PER_CHUNK": ("max_row_groups_per_chunk", "int"),
    "FLOWS_BULK_MAX_BYTES": ("bulk_max_bytes", "int"),
    "FLOWS_BULK_MAX_DOCS": ("bulk_max_docs", "int"),
    "FLOWS_BULK_IN_FLIGHT": ("max_in_flight", "int"),
    "FLOWS_DELETE_IN_FLIGHT": ("delete_in_flight", "int"),
    "FLOWS_EXPIRY_WARN_DAYS": ("expiry_warn_days", "int"),
}


def _from_env(environ: Mapping[str, str], names: dict[str, tuple[str, str]]) -> dict:
    """Resource fields for the environment variables that are set."""
    fields: dict = {}
    for var, (field_name, how) in names.items():
        if not environ.get(var):
            continue
        if how == "env":
            fields[field_name] = EnvVar(var)
        elif how == "int":
            fields[field_name] = EnvVar.int(var)
        elif how in ("value_int", "value_float"):
            fields[field_name] = _number(var, environ[var], int if how == "value_int" else float)
        else:
            fields[field_name] = environ[var]
    return fields


def _number(variable: str, text: str, kind: type[int] | type[float]) -> int | float:
    """`text` as a number; ConfigurationError naming the variable otherwise (not a bare ValueError)."""
    try:
        return kind(text)
    except ValueError:
        expected = "a whole number" if kind is int else "a number such as 0.5"
        raise ConfigurationError(
            f"{variable}={text!r}: expected {expected}; see the README's configuration table"
        ) from None


def index_prefix_from_env(environ: Mapping[str, str] = os.environ) -> str:
    """The index prefix the deployment configures (FLOWS_INDEX_PREFIX), for descriptions shown in the UI."""
    return environ.get("FLOWS_INDEX_PREFIX") or FlowsElasticsearch.model_fields["index_prefix"].default


def _minutes(environ: Mapping[str, str], variable: str, default: int) -> int:
    """Whole minutes from `variable`, or `default`; ConfigurationError naming the variable otherwise."""
    text = environ.get(variable) or str(default)
    if not text.strip().isdigit():
        raise ConfigurationError(f"{variable}={text!r}: expected whole minutes, 0 or more (default {default})")
    return int(text)


def source_lag_minutes(environ: Mapping[str, str] = os.environ) -> int:
    """The source lag the deployment configures (FLOWS_SOURCE_LAG_MINUTES), which the schedule follows.

    Raises ConfigurationError for a value that is not whole minutes.
    """
    return _minutes(environ, "FLOWS_SOURCE_LAG_MINUTES", DEFAULT_SOURCE_LAG_MINUTES)


def freshness_margin_minutes(environ: Mapping[str, str] = os.environ) -> int:
    """Minutes after the source lag within which an hour must be published (FLOWS_FRESHNESS_MARGIN_MINUTES).

    Raises ConfigurationError for a value that is not whole minutes.
    """
    return _minutes(environ, "FLOWS_FRESHNESS_MARGIN_MINUTES", DEFAULT_FRESHNESS_MARGIN_MINUTES)


@dataclass(frozen=True)
class CatchUpSettings:
    """How far back and how often the catch-up sensor re-requests hours (orchestration/catch_up.py)."""

    window_hours: int = 48  # FLOWS_CATCH_UP_HOURS: hours due within this window are looked at
    grace: timedelta = timedelta(minutes=15)  # FLOWS_CATCH_UP_GRACE_MINUTES: the schedule's time to request an hour
    backoff: timedelta = timedelta(minutes=10)  # FLOWS_CATCH_UP_BACKOFF_SECONDS: doubles with each attempt
    max_attempts: int = 5  # FLOWS_CATCH_UP_MAX_ATTEMPTS: catch-up runs of a failing hour
    max_requests_per_tick: int = 4  # FLOWS_CATCH_UP_MAX_REQUESTS: the run queue's limit does the rest
    interval_seconds: int = 120  # FLOWS_CATCH_UP_INTERVAL_SECONDS: between two evaluations


def catch_up_settings(environ: Mapping[str, str] = os.environ) -> CatchUpSettings:
    """The catch-up sensor's settings from the environment (defaults: CatchUpSettings).

    Raises ConfigurationError naming a variable whose value is not a whole number (hours, minutes, counts).
    """
    default = CatchUpSettings()
    return CatchUpSettings(
        window_hours=_whole(environ, "FLOWS_CATCH_UP_HOURS", default.window_hours, "hours", least=1),
        grace=timedelta(minutes=_minutes(environ, "FLOWS_CATCH_UP_GRACE_MINUTES", 15)),
        backoff=timedelta(seconds=_whole(environ, "FLOWS_CATCH_UP_BACKOFF_SECONDS", 600, "s")),
        max_attempts=_whole(environ, "FLOWS_CATCH_UP_MAX_ATTEMPTS", default.max_attempts, "runs"),
        max_requests_per_tick=_whole(environ, "FLOWS_CATCH_UP_MAX_REQUESTS", default.max_requests_per_tick, "runs"),
        interval_seconds=_whole(environ, "FLOWS_CATCH_UP_INTERVAL_SECONDS", default.interval_seconds, "s", least=1),
    )


def _whole(environ: Mapping[str, str], variable: str, default: int, unit: str, least: int = 0) -> int:
    text = environ.get(variable) or str(default)
    if not text.strip().isdigit() or int(text) < least:
        raise ConfigurationError(f"{variable}={text!r}: expected a whole number of {unit}, {least} or more")
    return int(text)


def resources_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, ConfigurableResource | StepValues]:
    """The deployment's resources: defaults for a local run, overridden by what the environment sets.

    Raises pydantic's ValidationError, naming the field and the allowed values, for a choice
    that is not one of them (e.g. FLOWS_SOURCE=nfdump).
    """
    if environ.get("FLOWS_ROW_GROUPS_PER_CHUNK"):
        warnings.warn(
            "FLOWS_ROW_GROUPS_PER_CHUNK is no longer read: an hour now gets one chunk per index_chunk step the "
            "run executes at once (es_bulk_steps), each at most FLOWS_MAX_ROW_GROUPS_PER_CHUNK row groups",
            stacklevel=2,
        )
    # the local node on another port (scripts/es.sh honours ES_PORT too), unless ES_URL names a cluster
    local = {"url": f"http://127.0.0.1:{environ['ES_PORT']}"} if environ.get("ES_PORT") else {}
    # tables on S3: the steps' values beside them, so workers need no shared disk (step_values.py);
    # otherwise Dagster's fs_io_manager in DAGSTER_HOME
    on_s3 = is_s3(environ.get("FLOWS_STORAGE_ROOT", ""))
    values = {"io_manager": StepValues(root=EnvVar("FLOWS_STORAGE_ROOT"))} if on_s3 else {}
    return {
        "storage": FlowStorage(**_from_env(environ, _STORAGE_ENV)),
        "source": FlowSource(**_from_env(environ, _SOURCE_ENV)),
        "es": FlowsElasticsearch(**(local | _from_env(environ, _ELASTICSEARCH_ENV))),
        "retention": FlowRetention(**_from_env(environ, _RETENTION_ENV)),
        **values,
    }


def resolved_resources(environ: Mapping[str, str] = os.environ) -> dict[str, ConfigurableResource]:
    """The same resources with their EnvVars read now: for scripts and tests outside a Dagster run."""
    return {key: resource.process_config_and_initialize() for key, resource in resources_from_env(environ).items()}
