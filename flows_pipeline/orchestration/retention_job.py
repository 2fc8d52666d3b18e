"""The daily retention job: what is older than FLOWS_RETENTION_DAYS is deleted, and shown as missing.

Tables and summary documents go with their hour; buckets go once all their hours have
(es/retention.py). The Dagster runs of the expired hours go too, with their event logs
(orchestration/run_retention.py): the UI then shows those hours as missing, Dagster's own data
stays bounded, and no kept hour is recorded again. The schedule ships stopped, like the hourly one.
"""

from datetime import UTC, datetime

from dagster import (
    AssetKey,
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
from flows_pipeline.orchestration.run_retention import delete_expired_runs
from flows_pipeline.tables.retention import delete_expired_tables


def apply_retention(
    instance: DagsterInstance,
    storage: FlowStorage,
    es: FlowsElasticsearch,
    days: int,
    now: datetime,
    own_run_id: str | None = None,
) -> dict[str, object]:
    """Delete what expired by `now`, and the Dagster runs of those hours (orchestration/run_retention.py).

    Returns what was deleted, for the step's metadata.
    """
    cutoff = retention_cutoff(now, days)
    if cutoff is None:
        return {"retention_days": 0, "deleted": "nothing: retention is off (FLOWS_RETENTION_DAYS=0)"}
    tables = {folder: delete_expired_tables(storage.root_location, [folder], cutoff) for folder in TABLE_FOLDERS}
    indices = delete_expired(es.connect(), es.layout, cutoff)
    assets = [AssetKey(name) for name in sorted({*TABLE_FOLDERS.values(), "flow_index"})]
    runs = delete_expired_runs(instance, cutoff, assets, keep=own_run_id, storage_root=storage.root_location)
    return {
        "retention_days": days,
        "cutoff": cutoff.isoformat(),
        "table_files_deleted": sum(t.files for t in tables.values()),
        "table_bytes_freed": sum(t.bytes for t in tables.values()),
        "indices_deleted": indices.indices,
        "index_bytes_freed": indices.bytes,
        "summary_documents_deleted": indices.summary_documents,
        "dagster_runs_deleted": runs.runs,
        "dagster_hours_forgotten": runs.hours,
        "dagster_bytes_freed": runs.bytes_freed,
    }


@op
def delete_expired_hours(
    context: OpExecutionContext, storage: FlowStorage, es: FlowsElasticsearch, retention: FlowRetention
):
    """Delete tables, summary documents and buckets older than FLOWS_RETENTION_DAYS; wipe their partitions."""
    with retry_only_transient_errors(context, "deleting expired hours"):
        report = apply_retention(
            context.instance, storage, es, retention.days, datetime.now(UTC), own_run_id=context.run_id
        )
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
