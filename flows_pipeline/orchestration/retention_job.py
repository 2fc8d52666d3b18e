"""The daily retention job: what is older than FLOWS_RETENTION_DAYS is deleted, and shown as missing.

Tables and summary documents go with their hour; buckets go once all their hours have
(es/retention.py). The Dagster partitions whose data is gone are wiped, so the UI shows them as
missing rather than as present: raw_flows, flow_table and flow_summary with the hour's tables,
flow_index with the index that held the hour. The schedule ships stopped, like the hourly one.
"""

from datetime import UTC, datetime

from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetRecordsFilter,
    DagsterInstance,
    DefaultScheduleStatus,
    MetadataValue,
    OpExecutionContext,
    Output,
    ScheduleDefinition,
    job,
    op,
)

from flows_pipeline.es.retention import delete_expired, retention_cutoff
from flows_pipeline.orchestration.failures import retry_only_transient_errors
from flows_pipeline.orchestration.resources import TABLE_FOLDERS, FlowRetention, FlowsElasticsearch, FlowStorage
from flows_pipeline.tables.retention import delete_expired_tables


def forget_partitions(instance: DagsterInstance, asset: AssetKey, deleted: set[str]) -> None:
    """Make Dagster show the deleted partitions as missing.

    Dagster's own partition wipe is not implemented by the SQL event log storages of Dagster OSS
    (SqliteEventLogStorage, PostgresEventLogStorage: `wipe_asset_partitions` raises
    NotImplementedError in 1.13). There the asset is wiped whole and the latest materialization of
    every partition that is kept is recorded again, with its metadata (so plots across partitions
    go on), as a materialization outside any run. What is lost for the kept partitions: the link to
    the run that made them, and their asset check history.
    """
    try:
        instance.wipe_asset_partitions(asset, sorted(deleted))
        return
    except NotImplementedError:
        pass
    kept = sorted(instance.get_materialized_partitions(asset) - deleted)
    latest: dict[str, AssetMaterialization] = {}
    cursor = None
    while kept:
        page = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=asset, asset_partitions=kept), limit=1000, cursor=cursor
        )
        for record in page.records:  # newest first
            if record.partition_key and record.asset_materialization:
                latest.setdefault(record.partition_key, record.asset_materialization)
        if not page.has_more:
            break
        cursor = page.cursor
    instance.wipe_assets([asset])
    for partition in kept:
        metadata = dict(latest[partition].metadata) if partition in latest else {}
        metadata["recorded_again_by"] = MetadataValue.text("flows_retention_job (Dagster OSS cannot wipe partitions)")
        instance.report_runless_asset_event(
            AssetMaterialization(asset_key=asset, partition=partition, metadata=metadata)
        )


def apply_retention(
    instance: DagsterInstance, storage: FlowStorage, es: FlowsElasticsearch, days: int, now: datetime
) -> dict[str, object]:
    """Delete what expired by `now`; wipe those partitions in `instance`. Returns what was deleted."""
    cutoff = retention_cutoff(now, days)
    if cutoff is None:
        return {"retention_days": 0, "deleted": "nothing: retention is off (FLOWS_RETENTION_DAYS=0)"}
    tables = {folder: delete_expired_tables(storage.root_path, [folder], cutoff) for folder in TABLE_FOLDERS}
    indices = delete_expired(es.connect(), es.layout, cutoff)
    wiped: dict[str, set[str]] = {}
    for folder, deleted in tables.items():
        wiped.setdefault(TABLE_FOLDERS[folder], set()).update(deleted.hours)
    wiped["flow_index"] = set(indices.hours)
    for asset, keys in wiped.items():
        if keys:
            forget_partitions(instance, AssetKey(asset), keys)
    return {
        "retention_days": days,
        "cutoff": cutoff.isoformat(),
        "table_files_deleted": sum(t.files for t in tables.values()),
        "table_bytes_freed": sum(t.bytes for t in tables.values()),
        "indices_deleted": indices.indices,
        "index_bytes_freed": indices.bytes,
        "summary_documents_deleted": indices.summary_documents,
        "partitions_wiped": {asset: len(keys) for asset, keys in wiped.items()},
    }


@op
def delete_expired_hours(
    context: OpExecutionContext, storage: FlowStorage, es: FlowsElasticsearch, retention: FlowRetention
):
    """Delete tables, summary documents and buckets older than FLOWS_RETENTION_DAYS; wipe their partitions."""
    with retry_only_transient_errors(context, "deleting expired hours"):
        report = apply_retention(context.instance, storage, es, retention.days, datetime.now(UTC))
    context.log.info(
        f"retention ({report['retention_days']} days): "
        + ", ".join(f"{key} {value}" for key, value in report.items() if key != "retention_days")
    )
    yield Output(
        None,
        metadata={
            key: MetadataValue.json(value) if isinstance(value, dict | list) else value for key, value in report.items()
        },
    )


@job(description="Deletes what is older than FLOWS_RETENTION_DAYS: tables, summary documents, buckets.")
def flows_retention_job():
    delete_expired_hours()


# Daily at 00:30 UTC; stopped by default: turn it on under Automation, as the hourly schedule.
flows_retention_schedule = ScheduleDefinition(
    job=flows_retention_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
)
