"""`raw_flows`: the hour's flow records as the source delivered them."""

from datetime import timedelta

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from flows_pipeline.hour import Hour
from flows_pipeline.orchestration.asset_metadata import CODE_VERSION, OWNERS, TAGS, table_metadata
from flows_pipeline.orchestration.catch_up import SOURCE_FILES_DIGEST, SOURCE_FILES_DIGEST_TAG
from flows_pipeline.orchestration.failures import retry_only_transient_errors
from flows_pipeline.orchestration.partitions import hourly_partitions, partition_hour
from flows_pipeline.orchestration.resources import TABLE_FOLDERS, FlowSource, FlowStorage
from flows_pipeline.orchestration.schedule_lag import check_schedule_lag
from flows_pipeline.orchestration.stale_runs import record_run_process
from flows_pipeline.sources.file_sets import FileSet, hour_file_set
from flows_pipeline.sources.raw_schema import RAW_FLOW_SCHEMA
from flows_pipeline.sources.source_reader import SourceReport, read_hour, source_bytes
from flows_pipeline.tables.column_docs import RAW_COLUMNS
from flows_pipeline.tables.disk_room import check_disk_room, hour_estimate
from flows_pipeline.tables.hour_tables import write_raw_flows


@asset(
    partitions_def=hourly_partitions,
    group_name="flows",
    kinds={"parquet"},
    owners=OWNERS,
    tags=TAGS,
    code_version=CODE_VERSION,
)
def raw_flows(context: AssetExecutionContext, storage: FlowStorage, source: FlowSource) -> MaterializeResult:
    """The hour's flow records as the source delivered them (GoFlow2 field names); unreadable ones apart."""
    record_run_process(context.instance, context.run.run_id, context.log)  # a reboot now can be told
    with retry_only_transient_errors(context):
        hour = partition_hour(context.partition_key)
        check_schedule_lag(context.run.tags, source.lag_minutes)
        settings = source.settings()
        previous = Hour(hour.start - timedelta(hours=1))
        needed = hour_estimate([storage.table_path(t, previous) for t in TABLE_FOLDERS], source_bytes(settings, hour))
        check_disk_room(storage.root_location, needed, hour.key)
        # before reading: a file that arrives during the read changes the set, and the hour is read again
        files = hour_file_set(settings, hour)
        if files is not None:
            context.instance.add_run_tags(context.run.run_id, {SOURCE_FILES_DIGEST_TAG: files.digest})
        report = SourceReport()
        stats = write_raw_flows(
            read_hour(settings, hour, report, batch_rows=storage.row_group_rows),
            raw_path=storage.table_path("raw_flows", hour),
            raw_quarantine_path=storage.table_path("raw_quarantine", hour),
            row_group_rows=storage.row_group_rows,
        )
    for path, problem in report.skipped.items():
        context.log.warning(f"skipped file {path}: {problem}")
    if report.other_names:
        context.log.info(
            f"{len(report.other_names)} files in the source folder are not {settings.kind} files and were not read: "
            + ", ".join(report.other_names[:5])
        )
    return MaterializeResult(
        metadata={
            **table_metadata(stats.rows, RAW_FLOW_SCHEMA, RAW_COLUMNS),
            "rows": stats.rows,
            "rejected_on_read": stats.rejected,
            "source": settings.kind,
            "files_read": len(report.files),
            "files_skipped": len(report.skipped),
            "skipped_files": MetadataValue.json(report.skipped),
            # the rest of the folder, told: nothing in it is passed over silently
            "files_of_other_hours": report.other_hours,
            "files_in_progress": MetadataValue.json(report.in_progress[:50]),
            "files_not_of_the_source": len(report.other_names),
            "other_files": MetadataValue.json(report.other_names[:50]),
            "table": MetadataValue.path(str(storage.table_path("raw_flows", hour))),
            **file_set_metadata(files),
        }
    )


def file_set_metadata(files: FileSet | None) -> dict:
    """What the catch-up sensor compares with the folder later: every file (name, bytes, mtime_ns) and their digest."""
    if files is None:
        return {}
    return {"source_files": MetadataValue.json(files.as_json()), SOURCE_FILES_DIGEST: files.digest}
