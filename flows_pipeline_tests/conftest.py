"""Shared fixtures: the real Elasticsearch (never a stand-in), and isolated Dagster/table homes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance
from elasticsearch import Elasticsearch

from flows_pipeline.es_connection import ConnectionSettings, connect

PROJECT = Path(__file__).resolve().parent.parent
ES_URL = os.environ.get("ES_URL", f"http://127.0.0.1:{os.environ.get('ES_PORT', '9200')}")


@pytest.fixture(scope="session")
def es_client() -> Elasticsearch:
    try:
        return connect(ConnectionSettings(url=ES_URL))
    except RuntimeError as err:
        pytest.fail(f"the tests need a real Elasticsearch: {err}")


@pytest.fixture(scope="session")
def index_prefix(es_client: Elasticsearch):
    """A prefix of this test session's own, so tests never touch the demo's `flows` indices."""
    prefix = f"flowstest{uuid.uuid4().hex[:8]}"
    yield prefix
    es_client.indices.delete(index=f"{prefix}*", expand_wildcards="all", ignore_unavailable=True)
    es_client.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-hourly")


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

    def instance(self) -> DagsterInstance:
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


def max_overlap(intervals) -> int:
    """Most intervals open at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = running = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


def make_project(root: Path, index_prefix: str) -> Project:
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
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


@pytest.fixture
def project(tmp_path: Path, index_prefix: str) -> Project:
    return make_project(tmp_path, index_prefix)
