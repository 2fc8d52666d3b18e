"""Retention over a season in minutes, against the real node: exactly the last FLOWS_RETENTION_DAYS
stay (indices, tables, quarantines, summary documents), the deleted hours' Dagster runs are
deleted so they show as missing, and nothing inside the window is touched."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
from dagster import AssetKey, AssetMaterialization, DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.events import DagsterEvent, StepMaterializationData
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._core.utils import make_new_run_id

from flows_pipeline.es.index_layout import IndexLayout
from flows_pipeline.es.summary_index import ensure_summary_index, index_summary
from flows_pipeline.hour import KEY_FORMAT, Hour, hour_of
from flows_pipeline.orchestration.resources import TABLE_FOLDERS, FlowsElasticsearch, FlowStorage
from flows_pipeline.orchestration.retention_job import apply_retention
from flows_pipeline.tables.row_groups import write_table
from flows_pipeline.tables.summary import SUMMARY_SCHEMA
from flows_pipeline_tests.es.test_index_lifecycle import load_and_publish, max_shards_per_node, open_shards
from flows_pipeline_tests.support import ES_URL

DAYS, RETENTION = 40, 30  # 40 day buckets would not fit under the lowered shard limit

HOURLY_ASSETS = ("raw_flows", "flow_table", "flow_quarantine", "flow_index", "flow_summary")


def summary_of(hour: Hour) -> pa.Table:
    rows = [{"hour": hour.key, "kind": "transport", "key": "tcp", "rank": 1, "flows": 5, "bytes": 5, "packets": 5}]
    return pa.Table.from_pylist(rows, schema=SUMMARY_SCHEMA)


def materialized_by_a_run(instance: DagsterInstance, hour: Hour) -> str:
    """A finished run of the hour whose event log holds a materialization of every hourly asset."""
    run = instance.add_run(
        DagsterRun(
            job_name="flows_hourly_job",
            run_id=make_new_run_id(),
            tags={PARTITION_NAME_TAG: hour.key},
            status=DagsterRunStatus.SUCCESS,
        )
    )
    for asset in HOURLY_ASSETS:
        materialization = AssetMaterialization(asset_key=asset, partition=hour.key)
        event = DagsterEvent(
            DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name=run.job_name,
            event_specific_data=StepMaterializationData(materialization),
        )
        instance.report_dagster_event(event, run_id=run.run_id)
    return run.run_id


def test_retention_keeps_exactly_the_last_days_and_forgets_the_deleted_hours_runs(es_client, index_prefix, tmp_path):
    storage = FlowStorage(root=str(tmp_path / "tables"))
    es = FlowsElasticsearch(url=ES_URL, index_prefix=f"{index_prefix}-ret", bucket="day")
    layout: IndexLayout = es.layout
    instance = DagsterInstance.ephemeral()
    first = hour_of("2021-10-28-03:00").start
    hours = [Hour(first + timedelta(days=d)) for d in range(DAYS)]

    ensure_summary_index(es_client, layout.summary_index, replicas=0)
    # summary documents are written and deleted with refresh=wait_for: at the index's default 1 s refresh
    # interval that waited ~0.5 s twice a day of the season (half the test's time); what is kept is the same
    es_client.indices.put_settings(index=layout.summary_index, settings={"refresh_interval": "50ms"})
    with max_shards_per_node(es_client, open_shards(es_client) + RETENTION + 4):  # 60 day buckets would not fit
        for day, hour in enumerate(hours):
            load_and_publish(es_client, layout, hour, f"ret{day:05d}")
            for folder in TABLE_FOLDERS:
                write_table(storage.table_path(folder, hour), summary_of(hour))
            ensure_summary_index(es_client, layout.summary_index, replicas=0)
            index_summary(es_client, layout.summary_index, hour, summary_of(hour))
            materialized_by_a_run(instance, hour)
            # the daily job, at 00:30 of the next day
            now = hour.start.replace(hour=0, minute=30) + timedelta(days=1)
            apply_retention(instance, storage, es, RETENTION, now)

    kept = {hour.key for hour in hours[-RETENTION:]}
    buckets = es_client.indices.get(index=layout.bucket_pattern(), expand_wildcards="all")
    assert set(buckets) == {layout.bucket_index(hour) for hour in hours[-RETENTION:]}
    for hour in hours[-RETENTION:]:
        assert es_client.count(index=layout.hour_alias(hour))["count"] == 5
    assert es_client.count(index=layout.read_alias)["count"] == 5 * RETENTION
    for folder in TABLE_FOLDERS:
        on_disk = {f"{p.parent.name}-{p.stem}:00" for p in Path(storage.root, folder).glob("*/*.parquet")}
        assert on_disk == kept, folder
    es_client.indices.refresh(index=layout.summary_index)
    summary_hours = es_client.search(
        index=layout.summary_index, size=0, aggs={"h": {"terms": {"field": "hour", "size": 100}}}
    )
    assert {b["key"] for b in summary_hours["aggregations"]["h"]["buckets"]} == kept
    for asset in HOURLY_ASSETS:
        assert instance.get_materialized_partitions(AssetKey(asset)) == kept, asset
    # the expired hours' runs went with their data: Dagster keeps exactly the window's
    assert {run.tags[PARTITION_NAME_TAG] for run in instance.get_runs()} == kept


def test_retention_zero_keeps_everything(es_client, index_prefix, tmp_path):
    storage = FlowStorage(root=str(tmp_path / "tables"))
    es = FlowsElasticsearch(url=ES_URL, index_prefix=f"{index_prefix}-keep")
    hour = hour_of("2021-10-28-03:00")
    load_and_publish(es_client, es.layout, hour, "keep0000")
    write_table(storage.table_path("flow_table", hour), summary_of(hour))
    report = apply_retention(DagsterInstance.ephemeral(), storage, es, 0, hour.start + timedelta(days=3650))
    assert "retention is off" in report["deleted"]
    assert es_client.count(index=es.layout.hour_alias(hour))["count"] == 5
    assert storage.table_path("flow_table", hour).exists()
    assert hour.start.strftime(KEY_FORMAT) == hour.key
