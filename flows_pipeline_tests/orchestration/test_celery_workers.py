"""Steps on two celery workers (FLOWS_EXECUTOR=celery) keep the limits of one machine, counted from the
cluster's side (bulk bodies in flight at a proxy in front of the node), and a worker SIGKILLed while it
loads a chunk costs a retry of that chunk, never a duplicate or a held slot.

The first test runs the layout of several machines whole: the production instance on PostgreSQL,
tables and step values on S3, each worker with a DAGSTER_HOME of its own (nothing shared but the
database, the broker and the bucket); the second, the single-machine instance (SQLite)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from dagster import DagsterEventType, DagsterRunStatus

from flows_pipeline.hour import hour_of
from flows_pipeline.orchestration.concurrency import ES_BULK_POOL
from flows_pipeline.tables import table_store
from flows_pipeline_tests.fault_proxy import FaultProxy
from flows_pipeline_tests.s3 import stored_files
from flows_pipeline_tests.support import ES_URL, index_layout, rows_in

ROWS = 6000
# 12 row groups of 500 rows, 2 a chunk: 6 chunks of 1,000 rows, each 4 bulk bodies of 250 sent one at a
# time, each held 0.3 s at the proxy: chunk steps that overlap whenever the limits let them
SMALL_HOUR = {
    "FLOWS_SYNTHETIC_ROWS": str(ROWS),
    "FLOWS_ROW_GROUP_ROWS": "500",
    "FLOWS_MAX_ROW_GROUPS_PER_CHUNK": "2",
    "FLOWS_BULK_MAX_DOCS": "250",
    "FLOWS_BULK_IN_FLIGHT": "1",
}


def _config(max_concurrent: int, es_bulk_steps: int) -> str:
    return json.dumps({"execution": {"config": {"max_concurrent": max_concurrent, "es_bulk_steps": es_bulk_steps}}})


def _chunk_workers(project, run_id: str) -> dict[str, set[str]]:
    """index_chunk step key -> the celery workers that started it (from the run's engine events)."""
    found: dict[str, set[str]] = {}
    with project.instance() as instance:
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
            event = entry.dagster_event
            metadata = event.engine_event_data.metadata
            if event.step_key and "index_chunk[" in event.step_key and "Celery worker" in metadata:
                worker = metadata["Celery worker"].value
                found.setdefault(event.step_key, set()).add(worker.split("@")[0])
    return found


def _assert_exact_and_slots_free(project, es_client, partition: str, run_id: str) -> None:
    layout = index_layout(project.env["FLOWS_INDEX_PREFIX"])
    assert rows_in(es_client, layout.hour_alias(hour_of(partition))) == (ROWS, 0, ROWS - 1)
    with project.instance() as instance:
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
        assert instance.event_log_storage.get_concurrency_info(ES_BULK_POOL).claimed_slots == []


def test_two_workers_sharing_no_folder_load_an_hour_within_the_runs_chunk_step_limit(
    celery_cluster_project, es_client, own_s3
):
    project, workers = celery_cluster_project
    with FaultProxy(ES_URL, "/_bulk", [], hold_s=0.3) as proxy:
        project.env |= {**SMALL_HOUR, "ES_URL": proxy.url}
        workers.up(workers=2, concurrency=2)
        done = project.materialize("2021-10-28-05:00", config_json=_config(max_concurrent=6, es_bulk_steps=2))
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_id = project.latest_run_id()
    # the pool allows 2 (dagster_home/dagster.yaml) and 4 worker processes wait: es_bulk_steps binds,
    # which dagster-celery's own executor does not honour (celery_steps.py)
    assert proxy.peak_in_flight == 2
    chunks = _chunk_workers(project, run_id)
    assert len(chunks) == 6
    assert set().union(*chunks.values()) == {"w1", "w2"}, f"the chunks did not spread over both workers: {chunks}"
    _assert_exact_and_slots_free(project, es_client, "2021-10-28-05:00", run_id)
    # the chunk descriptors and results went through the bucket, none through a folder of the run
    with own_s3.environment():
        values = stored_files(table_store.join(project.env["FLOWS_STORAGE_ROOT"], "step_values", run_id))
    assert len([v for v in values if v.startswith("flow_index.index_chunk[")]) == 6, values
    assert not (project.home / "storage").exists()


def test_a_worker_killed_mid_chunk_costs_a_retry_on_the_other_not_a_duplicate_nor_a_slot(
    celery_project, es_client, tmp_path: Path
):
    project, workers = celery_project
    partition = "2021-10-28-06:00"
    log = tmp_path / "run.log"
    with FaultProxy(ES_URL, "/_bulk", [], hold_s=0.3) as proxy:
        # the broker gives a lost worker's unacknowledged steps to the other after this long
        project.env |= {**SMALL_HOUR, "ES_URL": proxy.url, "FLOWS_CELERY_VISIBILITY_TIMEOUT_S": "8"}
        workers.up(workers=2, concurrency=2)
        with log.open("w") as out:
            run = subprocess.Popen(
                project.command(partition, config_json=_config(max_concurrent=6, es_bulk_steps=4)),
                cwd=project.cwd, env=project.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 90
        running: dict[str, set[str]] = {}
        while not running or not proxy.ids:  # a chunk step started on a worker, and its bodies reach the node
            assert run.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
            running = _chunk_workers(project, _latest_run(project)) if _latest_run(project) else {}
        victim = sorted(next(iter(running.values())))[0]
        workers.kill(victim)
        assert run.wait(timeout=150) == 0, log.read_text()[-4000:]
    run_id = _latest_run(project)
    chunks = _chunk_workers(project, run_id)
    retried = {key for key, names in chunks.items() if victim in names and len(names) > 1}
    assert retried, f"no chunk of {victim} was executed again by the other worker: {chunks}"
    assert proxy.peak_in_flight <= 2  # the pool, also while a lost worker's chunk waited for the broker
    _assert_exact_and_slots_free(project, es_client, partition, run_id)


def _latest_run(project) -> str | None:
    with project.instance() as instance:
        runs = instance.get_runs(limit=1)
        return runs[0].run_id if runs else None
