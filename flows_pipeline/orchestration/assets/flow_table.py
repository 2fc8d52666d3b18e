"""`flow_table`: the hour's flows in the typed ECS flow schema, and its quarantine."""

from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from flows_pipeline.hour import hour_of
from flows_pipeline.orchestration.asset_metadata import CODE_VERSION, OWNERS, TAGS, table_metadata
from flows_pipeline.orchestration.assets.raw_flows import raw_flows
from flows_pipeline.orchestration.failures import retry_only_transient_errors
from flows_pipeline.orchestration.partitions import ONE_RUN_PER_HOUR, hourly_partitions
from flows_pipeline.orchestration.resources import FlowSource, FlowStorage
from flows_pipeline.tables.column_docs import FLOW_COLUMNS
from flows_pipeline.tables.flow_schema import FLOW_TABLE_SCHEMA
from flows_pipeline.tables.hour_tables import TABLES, build_flow_table, recount

EVERY_RECORD_ACCOUNTED_FOR = AssetCheckSpec(
    "every_record_accounted_for",
    asset="flow_table",
    blocking=True,
    description=(
        "Records read (raw_flows + raw_quarantine) = flow_table rows + flow_quarantine rows + flows of other "
        "hours, recounted from the files as written."
    ),
)


@asset(
    partitions_def=hourly_partitions,
    group_name="flows",
    kinds={"parquet"},
    backfill_policy=ONE_RUN_PER_HOUR,
    deps=[raw_flows],
    check_specs=[EVERY_RECORD_ACCOUNTED_FOR],
    owners=OWNERS,
    tags=TAGS,
    code_version=CODE_VERSION,
)
def flow_table(context: AssetExecutionContext, storage: FlowStorage, source: FlowSource):
    """The hour's flows in the typed ECS flow schema; invalid records go to the quarantine table."""
    with retry_only_transient_errors():
        hour = hour_of(context.partition_key)
        paths = {name: storage.table_path(name, hour) for name in TABLES}
        stats = build_flow_table(
            raw_path=paths["raw_flows"],
            raw_quarantine_path=paths["raw_quarantine"],
            hour=hour,
            table_path=paths["flow_table"],
            quarantine_path=paths["flow_quarantine"],
            row_group_rows=storage.row_group_rows,
            options=source.normalize_options(storage.community_id),
        )
        yield MaterializeResult(
            metadata={
                **table_metadata(stats.rows, FLOW_TABLE_SCHEMA, FLOW_COLUMNS),
                "rows": stats.rows,
                "records_read": stats.records_read,
                "quarantined": stats.quarantined,
                "outside_hour": stats.outside_hour,
                "row_groups": stats.row_groups,
                "size (bytes)": MetadataValue.int(stats.bytes_on_disk),
                "sha256": stats.sha256,
                "path": MetadataValue.path(str(paths["flow_table"])),
                "quarantine_path": MetadataValue.path(str(paths["flow_quarantine"])),
            }
        )
        # recounted from the files as written, independently of the counters above
        tally = recount(paths, hour, source.numeric_time_unit)
    yield AssetCheckResult(
        check_name=EVERY_RECORD_ACCOUNTED_FOR.name,
        passed=tally.balanced,
        metadata={
            "records_read": tally.records_read,
            "rows": tally.rows,
            "quarantined": tally.quarantined,
            "outside_hour": tally.outside_hour,
        },
    )
