"""A CLI run SIGKILLed while its chunks load blocks no later run, and nothing of it becomes visible
(issue 11). No daemon: only the runs themselves free the slots of the dead run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from dagster import DagsterEventType, DagsterRunStatus

from flows_pipeline.hour import hour_of
from flows_pipeline.orchestration.concurrency import ES_BULK_POOL
from flows_pipeline_tests.support import index_layout, step_failures

KILLED_HOUR = "2021-10-28-18:00"
OTHER_HOUR = "2021-10-28-19:00"
ROWS = 200_000
LIMIT_S = 150  # the bound for a re-run after the kill, without manual steps
# two chunks of 100,000 rows in requests of 2,000 documents: a load that lasts long enough to be killed in
LOAD_ENV = {
    "FLOWS_SYNTHETIC_ROWS": str(ROWS),
    "FLOWS_ROW_GROUP_ROWS": "65536",
    "FLOWS_MAX_ROW_GROUPS_PER_CHUNK": "32",
    "FLOWS_BULK_MAX_DOCS": "2000",
}


def _start(project, partition: str, select: str, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            project.command(partition, select=select),
            cwd=project.cwd,
            env={**project.env, **LOAD_ENV},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its forkserver and steps share its process group, as in the case
        )


def _wait_for_group_to_exit(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    return False


def test_a_killed_cli_run_blocks_neither_the_rerun_nor_another_hour_and_publishes_nothing(
    project, es_client, tmp_path: Path
):
    tables = project.materialize_in_process(KILLED_HOUR, select="raw_flows,flow_table", extra_env=LOAD_ENV)
    assert tables.success, step_failures(tables)  # the tables only: the CLI run killed below is the case
    layout = index_layout(project.env["FLOWS_INDEX_PREFIX"])
    killed_hour = hour_of(KILLED_HOUR)

    # 1. the load, SIGKILLed once a chunk step has started; its orphan steps may finish their chunks
    first_log = tmp_path / "killed.log"
    first = _start(project, KILLED_HOUR, "flow_index", first_log)
    deadline = time.monotonic() + 120
    while "index_chunk[" not in first_log.read_text() or "STEP_START" not in first_log.read_text():
        assert first.poll() is None and time.monotonic() < deadline, first_log.read_text()[-3000:]
        time.sleep(0.2)
    time.sleep(1)
    assert first.poll() is None, "the load ended before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_run = project.latest_run_id()
    if not _wait_for_group_to_exit(first.pid, timeout_s=120):
        os.killpg(first.pid, signal.SIGKILL)

    with project.instance() as instance:
        assert instance.get_run_by_id(killed_run).status == DagsterRunStatus.STARTED
        held = instance.event_log_storage.get_concurrency_info(ES_BULK_POOL).claimed_slots
        assert {slot.run_id for slot in held} == {killed_run}, "the case's fault: the dead run holds its slots"
        publish_events = [
            e.dagster_event_type.value
            for e in instance.all_logs(killed_run)
            if "publish_flow_index" in (e.step_key or "") and e.dagster_event_type
        ]
        assert DagsterEventType.STEP_START.value not in publish_events, publish_events
    assert not es_client.indices.exists_alias(name=layout.hour_alias(killed_hour)), "the killed run published"
    killed_range = {"range": {"@timestamp": {"gte": killed_hour.start.isoformat(), "lt": killed_hour.end.isoformat()}}}
    everything = f"{project.env['FLOWS_INDEX_PREFIX']}*"
    es_client.indices.refresh(index=everything, expand_wildcards="all")
    # orphan chunk steps may have written some documents (through their attempt alias) or none, if they
    # died with their parent first; either way no alias selects them (asserted above and below)
    orphans = es_client.count(index=everything, expand_wildcards="all", query=killed_range)["count"]
    visible = es_client.count(index=layout.read_alias, query=killed_range, ignore_unavailable=True)["count"]
    assert visible == 0, f"{visible} of {orphans} orphan documents are visible"

    # 2. the re-run of the hour and a run of another hour, both started after the kill
    started = time.monotonic()
    rerun = _start(project, KILLED_HOUR, "flow_index", tmp_path / "rerun.log")
    other = _start(project, OTHER_HOUR, "*", tmp_path / "other.log")
    try:
        for run, log in ((rerun, "rerun.log"), (other, "other.log")):
            remaining = max(1.0, LIMIT_S - (time.monotonic() - started))
            assert run.wait(timeout=remaining) == 0, (tmp_path / log).read_text()[-3000:]
    finally:
        for run in (rerun, other):
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
    assert time.monotonic() - started < LIMIT_S

    for key in (KILLED_HOUR, OTHER_HOUR):
        assert es_client.count(index=layout.hour_alias(hour_of(key)))["count"] == ROWS
    # through the read alias the hour holds exactly its rows: nothing of the killed attempt shows
    assert es_client.count(index=layout.read_alias, query=killed_range)["count"] == ROWS
    # and the documents its orphan steps wrote are gone from every index, hidden or not, once refreshed
    es_client.indices.refresh(index=everything, expand_wildcards="all")
    assert es_client.count(index=everything, expand_wildcards="all", query=killed_range)["count"] == ROWS
    with project.instance() as instance:
        killed = instance.get_run_by_id(killed_run)
        assert killed.status == DagsterRunStatus.FAILURE
        (failure,) = instance.get_records_for_run(killed_run, of_type=DagsterEventType.RUN_FAILURE).records
        assert "is gone" in failure.event_log_entry.dagster_event.message
        assert instance.event_log_storage.get_concurrency_info(ES_BULK_POOL).claimed_slots == []
