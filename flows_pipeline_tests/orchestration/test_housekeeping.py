"""Dagster's own data stays bounded over a simulated season of real runs, and the retention job
never records anything for the hours it keeps: a failed hour stays failed, a published one keeps
its one materialization. Real runs of the assets in process, on the project's SQLite instance
(the retention job's also on the production instance, PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from flows_pipeline.hour import Hour, hour_of
from flows_pipeline.orchestration.partitions import hourly_partitions
from flows_pipeline.orchestration.resources import FlowsElasticsearch, FlowStorage
from flows_pipeline.orchestration.retention_job import apply_retention
from flows_pipeline_tests.support import ES_URL, PROJECT, free_port, step_failures

DAYS, HOURS_A_DAY = 4, 4  # a run every 6 hours: enough to show the size steady from the second day
FIRST = hour_of("2021-11-01-00:00").start
FLOW_INDEX = AssetKey("flow_index")


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def partition_status(instance, asset: AssetKey) -> tuple[set[str], set[str]]:
    """(materialized, failed) partitions as the UI shows them: Dagster's partition status cache."""
    partitions = hourly_partitions
    value = get_and_update_asset_status_cache_value(instance, asset, partitions)
    materialized = value.deserialize_materialized_partition_subsets(partitions).get_partition_keys()
    failed = value.deserialize_failed_partition_subsets(partitions).get_partition_keys()
    return set(materialized), set(failed)


def test_a_season_of_runs_keeps_dagster_home_bounded_and_kept_hours_untouched(project, index_prefix):
    project.env |= {"FLOWS_SYNTHETIC_ROWS": "200"}
    storage = FlowStorage(root=project.env["FLOWS_STORAGE_ROOT"])
    es = FlowsElasticsearch(url=ES_URL, index_prefix=project.env["FLOWS_INDEX_PREFIX"])
    sizes, runs_kept = [], []
    for day in range(DAYS):
        for n in range(HOURS_A_DAY):
            hour = Hour(FIRST + timedelta(days=day, hours=24 // HOURS_A_DAY * n))
            done = project.materialize_in_process(hour.key, select="raw_flows,flow_table")
            assert done.success, step_failures(done)
        now = FIRST + timedelta(days=day + 1, minutes=30)  # the daily job, 00:30 the next day
        with project.instance() as instance:
            report = apply_retention(instance, storage, es, 1, now)
            runs_kept.append(len(instance.get_runs()))
        sizes.append(tree_bytes(project.home))
        assert report["dagster_runs_deleted"] == (HOURS_A_DAY if day else 0), report

    # one day kept, plus the hours of the day whose end is after the cutoff: never more runs
    assert runs_kept[1:] == [HOURS_A_DAY] * (DAYS - 1), runs_kept
    with project.instance() as instance:
        run_files = {p.stem for p in Path(instance.event_log_storage._base_dir).glob("*.db")} - {"index"}
        assert run_files == {run.run_id for run in instance.get_runs()}, "a deleted run left its event log database"
    # the stated bound: steady once retention runs; no more than the second day's size + 20%
    assert max(sizes[1:]) <= sizes[1] * 1.2, sizes
    print(f"dagster_home after each day: {[round(s / 1024) for s in sizes]} KiB; runs kept {runs_kept}")


@pytest.mark.parametrize("home", ["project", pytest.param("pg_project", marks=pytest.mark.postgres)])
def test_the_retention_job_leaves_a_failed_hour_failed_and_records_nothing_for_kept_hours(home, request):
    """On SQLite (dagster_home/) and on the production instance (deploy/, PostgreSQL): the expired
    hour's run is deleted with its materializations, the kept ones are untouched."""
    project = request.getfixturevalue(home)
    project.env |= {"FLOWS_SYNTHETIC_ROWS": "300"}
    expired, published, failed = (hour_of(key) for key in ("2021-11-01-01:00", "2021-11-03-01:00", "2021-11-03-02:00"))
    for hour in (expired, published):
        done = project.materialize_in_process(hour.key)
        assert done.success, step_failures(done)
    down = project.materialize_in_process(failed.key, extra_env={"ES_URL": f"http://127.0.0.1:{free_port()}"})
    assert not down.success
    with project.instance() as instance:
        before = instance.fetch_materializations(AssetRecordsFilter(asset_key=FLOW_INDEX), limit=100).records
        assert partition_status(instance, FLOW_INDEX) == ({expired.key, published.key}, {failed.key})

        storage = FlowStorage(root=project.env["FLOWS_STORAGE_ROOT"])
        es = FlowsElasticsearch(url=ES_URL, index_prefix=project.env["FLOWS_INDEX_PREFIX"])
        report = apply_retention(instance, storage, es, 1, published.start + timedelta(hours=12))

        assert report["dagster_runs_deleted"] == 1 and len(report["indices_deleted"]) == 1
        after = instance.fetch_materializations(AssetRecordsFilter(asset_key=FLOW_INDEX), limit=100).records
        assert [r.storage_id for r in after] == [r.storage_id for r in before if r.partition_key != expired.key]
        assert partition_status(instance, FLOW_INDEX) == ({published.key}, {failed.key})
        statuses = {run.tags["dagster/partition"]: run.status for run in instance.get_runs()}
        assert statuses == {published.key: DagsterRunStatus.SUCCESS, failed.key: DagsterRunStatus.FAILURE}


def test_the_instance_purges_schedule_and_sensor_ticks():
    instance = DagsterInstance.from_config(str(PROJECT / "dagster_home"))
    schedule = instance.get_tick_retention_settings(InstigatorType.SCHEDULE)
    sensor = instance.get_tick_retention_settings(InstigatorType.SENSOR)
    assert {schedule[status] for status in (TickStatus.SKIPPED, TickStatus.SUCCESS, TickStatus.FAILURE)} == {30}
    assert (sensor[TickStatus.SKIPPED], sensor[TickStatus.SUCCESS], sensor[TickStatus.FAILURE]) == (2, 30, 30)
