"""Test support that is not a fixture: the project's paths, an isolated project to run the CLI in,
and small helpers for event logs and settings built from the resources' defaults."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import requests
from dagster import DagsterEventType, DagsterInstance, ExecuteInProcessResult, materialize
from elasticsearch import Elasticsearch

from flows_pipeline.es.bulk_sender import BulkRetry
from flows_pipeline.es.connection import ConnectionSettings
from flows_pipeline.es.index_layout import IndexLayout
from flows_pipeline.es.index_lifecycle import bucket_mappings
from flows_pipeline.orchestration.resources import FlowsElasticsearch, FlowSource, resolved_resources

PROJECT = Path(__file__).resolve().parent.parent
ES_URL = os.environ.get("ES_URL", f"http://127.0.0.1:{os.environ.get('ES_PORT', '9200')}")


def connection_settings(url: str = ES_URL) -> ConnectionSettings:
    """The resource's connection settings (its defaults) for `url`."""
    return FlowsElasticsearch(url=url).connection()


def index_layout(prefix: str, bucket: str = "day") -> IndexLayout:
    """The resource's index layout (its defaults) under `prefix`."""
    return FlowsElasticsearch(index_prefix=prefix, bucket=bucket).layout


def flow_test_index(client: Elasticsearch, name: str) -> str:
    """A plain index with the flow mapping, for tests of bulk sending (not a bucket: no aliases)."""
    client.options(ignore_status=404).indices.delete(index=name)
    client.indices.create(index=name, mappings=bucket_mappings(), settings={"number_of_replicas": 0})
    return name


def bulk_retry(max_retries: int, initial_backoff_s: float = 0.5) -> BulkRetry:
    """A retry policy with the resource's longest backoff."""
    return FlowsElasticsearch(max_retries=max_retries, retry_initial_backoff_s=initial_backoff_s).retry


def synthetic_source(rows: int):
    """The resource's source settings for a synthetic hour of `rows` flows."""
    return FlowSource(synthetic_rows_per_hour=rows).settings()


@dataclass
class Project:
    """An isolated DAGSTER_HOME and storage root, and the environment a run sees."""

    home: Path
    storage: Path
    env: dict[str, str]

    cwd = PROJECT

    @staticmethod
    def command(partition: str, *, config_json: str | None = None, select: str = "*") -> list[str]:
        command = [
            str(Path(sys.executable).parent / "dagster"),
            "asset", "materialize", "-m", "flows_pipeline.definitions", "--select", select, "--partition", partition,
        ]  # fmt: skip
        return command + (["--config-json", config_json] if config_json else [])

    def materialize(self, partition: str, *, config_json: str | None = None, select: str = "*", extra_env=None):
        return subprocess.run(
            self.command(partition, config_json=config_json, select=select),
            cwd=PROJECT,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=600,
        )

    def materialize_in_process(
        self,
        partition: str,
        *,
        select: str = "*",
        extra_env=None,
        es_bulk_steps: int | None = None,
        tags: dict[str, str] | None = None,
    ) -> ExecuteInProcessResult:
        """The same run as `materialize`, in this process: Dagster's in-process executor (one step
        at a time; a step's RetryPolicy is honoured the same way), this project's instance and
        event log, and the resources the environment would give the CLI. `es_bulk_steps` stands
        for the multiprocess executor's setting of that name, which sets the number of chunks."""
        # imported here: the code location loads the whole project, which the memory-limited child
        # of test_memory_bound, importing this module, does not need
        from flows_pipeline.definitions import defs

        env = {**self.env, **(extra_env or {})}
        with mock.patch.dict(os.environ, env):  # what the resources' EnvVars read
            resources = resolved_resources(env)
        run_config = {"execution": {"config": {"es_bulk_steps": es_bulk_steps}}} if es_bulk_steps else None
        with self.instance() as instance:
            return materialize(
                list(defs.assets),  # as the code location declares them, before it binds its resources
                selection=None if select == "*" else select.split(","),
                partition_key=partition,
                resources=resources,
                instance=instance,
                run_config=run_config,
                raise_on_error=False,
                tags=tags,
            )

    def instance(self) -> DagsterInstance:
        # in this project's environment: the production instance reads its connection (DAGSTER_PG_*) then
        with mock.patch.dict(os.environ, self.env):
            return DagsterInstance.from_config(str(self.home))

    def latest_run_id(self) -> str:
        with self.instance() as instance:
            return instance.get_runs(limit=1)[0].run_id

    def step_intervals(self, run_id: str) -> dict[str, tuple[float, float]]:
        """step key -> (start, end) from the run's event log."""
        starts: dict[str, float] = {}
        intervals: dict[str, tuple[float, float]] = {}
        with self.instance() as instance:
            for entry in instance.all_logs(run_id):
                event = entry.dagster_event
                if event is None or event.step_key is None:
                    continue
                if event.event_type == DagsterEventType.STEP_START:
                    starts[event.step_key] = entry.timestamp
                elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
                    intervals[event.step_key] = (starts[event.step_key], entry.timestamp)
        return intervals


def step_failures(result: ExecuteInProcessResult) -> str:
    """Every failed step's error of an in-process run, with its causes: what the CLI would print."""
    failed = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    return "\n".join(e.step_failure_data.error.to_string() for e in failed if e.step_failure_data.error)


def max_overlap(intervals) -> int:
    """Most intervals open at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = running = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


def indexing_started(es_client, pattern: str) -> bool:
    """Whether any document reached the indices matching `pattern` (hidden ones included)."""
    stats = es_client.indices.stats(index=pattern, metric="indexing", expand_wildcards="all")
    return stats["_all"]["primaries"].get("indexing", {}).get("index_total", 0) > 0


def run_script(script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run one of the project's scripts (scripts/es.sh, scripts/postgres.sh) with `args` from the
    project folder; its output, or a RuntimeError with the last lines of what it printed."""
    done = subprocess.run(
        ["bash", str(script), *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{script.relative_to(PROJECT)} {' '.join(args)} failed ({done.returncode}): {done.stderr[-3000:]}"
        )
    return done.stdout


def script_exports(script: Path, env: dict[str, str], prefixes: tuple[str, ...]) -> dict[str, str]:
    """The variables named with `prefixes` that `bash script env` exports, evaluated as a shell would:
    a secret the exports read from its file is handed over here, never printed."""
    shell = f'eval "$(bash {script} env)" && env -0'
    done = subprocess.run(["bash", "-c", shell], env=env, capture_output=True, text=True, check=True)
    return dict(item.split("=", 1) for item in done.stdout.split("\0") if item.startswith(prefixes))


def free_port() -> int:
    """A TCP port nothing listens on now, on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_dagster_ui(url: str, process: subprocess.Popen, timeout_s: float = 120, log: Path | None = None) -> None:
    """Until the webserver at `url` answers; AssertionError (with the log's tail) if `process` ends first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/server_info", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        assert process.poll() is None, log.read_text()[-3000:] if log else f"exit {process.returncode}"
        time.sleep(0.25)
    raise AssertionError(f"the Dagster UI at {url} did not answer in {timeout_s} s")


# The shipped instance's run queue is Dagster's QueuedRunCoordinator, polled every 5 s by the daemon;
# the suite's polls it every second: the same queue and limits (concurrency.runs), queued runs
# started sooner (each retry, backfill hour and catch-up run of a daemon test waits in it).
QUEUE_POLLED_EACH_SECOND = """
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
"""


def make_project(root: Path, index_prefix: str) -> Project:
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with (home / "dagster.yaml").open("a") as config:
        config.write(QUEUE_POLLED_EACH_SECOND)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ES_URL": ES_URL,
        "FLOWS_STORAGE_ROOT": str(root / "tables"),
        "FLOWS_INDEX_PREFIX": index_prefix,
        # small hours cut into several chunks, so the fan-out really fans out
        "FLOWS_SYNTHETIC_ROWS": "20000",
        "FLOWS_ROW_GROUP_ROWS": "2500",
        "FLOWS_MAX_ROW_GROUPS_PER_CHUNK": "2",
    }
    return Project(home=home, storage=root / "tables", env=env)


def rows_in(client: Elasticsearch, target: str) -> tuple[int, int | None, int | None]:
    """(documents, smallest and largest event.sequence) through an alias: with ids unique per row of the
    attempt, N documents with sequences 0..N-1 are each row of the hour exactly once."""
    client.indices.refresh(index=target)
    aggs = {"first": {"min": {"field": "event.sequence"}}, "last": {"max": {"field": "event.sequence"}}}
    found = client.search(index=target, size=0, track_total_hits=True, aggs=aggs)
    first, last = (found["aggregations"][name]["value"] for name in ("first", "last"))
    return found["hits"]["total"]["value"], None if first is None else int(first), None if last is None else int(last)
