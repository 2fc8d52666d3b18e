"""A chunk step killed with SIGKILL in the middle of its bulk requests is retried, and the hour is exact."""

import os
import signal
import subprocess
import time

from dagster import DagsterEventType

from flows_pipeline.hour import hour_of
from flows_pipeline_tests.support import indexing_started, rows_in

PARTITION = "2021-10-28-09:00"


def running_chunk_step_pids(project) -> list[int]:
    """Processes of index_chunk steps that started and have not finished, from the run's event log."""
    with project.instance() as instance:
        runs = instance.get_runs(limit=1)
        if not runs:
            return []
        events = [e.dagster_event for e in instance.all_logs(runs[0].run_id) if e.dagster_event]
    started = {e.step_key: e.pid for e in events if e.event_type == DagsterEventType.STEP_START}
    ended = {
        e.step_key for e in events if e.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE)
    }
    return [pid for key, pid in started.items() if key.startswith("flow_index.index_chunk[") and key not in ended]


def test_chunk_step_killed_mid_bulk_is_retried_and_the_index_is_exact(project, es_client):
    env = {
        **project.env,
        "FLOWS_SYNTHETIC_ROWS": "60000",
        "FLOWS_ROW_GROUP_ROWS": "5000",
        "FLOWS_MAX_ROW_GROUPS_PER_CHUNK": "6",
        "FLOWS_BULK_MAX_DOCS": "300",  # many small requests: the kill lands between two of them
        "FLOWS_BULK_IN_FLIGHT": "1",
    }
    attempts = f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of(PARTITION).label}-*"
    run = subprocess.Popen(project.command(PARTITION), cwd=project.cwd, env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        victim = None
        while victim is None and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
            if es_client.indices.exists(index=attempts, expand_wildcards="all") and indexing_started(
                es_client, attempts
            ):
                pids = running_chunk_step_pids(project)
                victim = pids[0] if pids else None
        assert victim is not None, "no chunk step was seen loading"
        os.kill(victim, signal.SIGKILL)
        output, _ = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == 0, output[-4000:]

    run_id = project.latest_run_id()
    with project.instance() as instance:
        events = [e.dagster_event for e in instance.all_logs(run_id) if e.dagster_event]
    retried = [e.step_key for e in events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert any(key.startswith("flow_index.index_chunk[") for key in retried)
    alias = f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of(PARTITION).label}"
    assert rows_in(es_client, alias) == (60_000, 0, 59_999)  # every row once: ids are unique per row
