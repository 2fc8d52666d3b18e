"""`flow_table` and `flow_quarantine`: the hour's valid flows in the typed ECS flow schema, and the
records set aside with their reasons; one step writes both (op `flow_table`)."""

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetMaterialization,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from flows_pipeline.orchestration.asset_metadata import CODE_VERSION, OWNERS, TAGS, table_metadata
from flows_pipeline.orchestration.assets.raw_flows import raw_flows
from flows_pipeline.orchestration.failures import retry_only_transient_errors
from flows_pipeline.orchestration.partitions import hourly_partitions, partition_hour
from flows_pipeline.orchestration.resources import FlowSource, FlowStorage
from flows_pipeline.orchestration.stale_runs import record_run_process
from flows_pipeline.sources.raw_schema import QUARANTINE_SCHEMA
from flows_pipeline.tables.column_docs import FLOW_COLUMNS, QUARANTINE_COLUMNS
from flows_pipeline.tables.flow_schema import FLOW_TABLE_SCHEMA
from flows_pipeline.tables.hour_tables import TABLES, build_flow_table, recount
from flows_pipeline.tables.quarantine import count_reasons

EVERY_RECORD_ACCOUNTED_FOR = AssetCheckSpec(
    "every_record_accounted_for",
    asset="flow_table",
    blocking=True,
    partitions_def=hourly_partitions,
    description=(
        "Every record read for the hour is in exactly one place: records read (raw_flows + raw_quarantine) = "
        "flow_table rows + flow_quarantine rows + flows of other hours, recounted from the files as written."
    ),
)

_COMMON = {"group_name": "flows", "owners": OWNERS, "tags": TAGS, "code_version": CODE_VERSION, "deps": [raw_flows]}
FLOW_TABLE = AssetSpec(
    "flow_table",
    description="The hour's valid flows in the typed ECS flow schema: `flow_table/YYYY-MM-DD/HH.parquet`.",
    kinds={"parquet"},
    **_COMMON,
)
FLOW_QUARANTINE = AssetSpec(
    "flow_quarantine",
    description=(
        "The hour's quarantine: every record set aside, with its reason (the field and the rule it breaks), its "
        "file and line: records the source reader could not read (`raw_quarantine/`) and records invalid as "
        "flows. `flow_quarantine/YYYY-MM-DD/HH.parquet`; reasons counted in the metadata."
    ),
    kinds={"parquet"},
    **_COMMON,
)


# can_subset: `--select flow_table` (or raw_flows,flow_table, as the cases and the bench run it)
# keeps working. The step always writes both tables (one pass over raw_flows), so it records both:
# the selected ones as its outputs, the other as an AssetMaterialization of the same hour; Dagster
# then never shows a table that was rewritten without a record.
@multi_asset(
    name="flow_table",
    specs=[FLOW_TABLE, FLOW_QUARANTINE],
    partitions_def=hourly_partitions,
    check_specs=[EVERY_RECORD_ACCOUNTED_FOR],
    can_subset=True,
)
def flow_table(context: AssetExecutionContext, storage: FlowStorage, source: FlowSource):
    """Normalize the hour's raw flows: valid ones to flow_table, invalid ones to flow_quarantine."""
    record_run_process(context.instance, context.run.run_id, context.log)  # a reboot now can be told
    with retry_only_transient_errors(context):
        hour = partition_hour(context.partition_key)
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
        report = count_reasons(paths["flow_quarantine"], paths["raw_quarantine"], storage.row_group_rows)
        # recounted from the files as written, independently of the counters above
        tally = recount(paths, hour, source.numeric_time_unit)
    table = {
        **table_metadata(stats.rows, FLOW_TABLE_SCHEMA, FLOW_COLUMNS),
        "rows": stats.rows,
        "records_read": stats.records_read,
        "quarantined": stats.quarantined,
        "outside_hour": stats.outside_hour,
        "row_groups": stats.row_groups,
        "size (bytes)": MetadataValue.int(stats.bytes_on_disk),
        "sha256": stats.sha256,
        "table": MetadataValue.path(str(paths["flow_table"])),
    }
    quarantine = {
        **table_metadata(report.records, QUARANTINE_SCHEMA, QUARANTINE_COLUMNS),
        "rejected_on_read": report.rejected_on_read,
        "invalid_flows": report.invalid,
        "reason_kinds": len(report.reasons),
        "reasons": MetadataValue.md(report.reasons_markdown()),
        "records_by_reason": MetadataValue.json(report.top_reasons()),
        "table": MetadataValue.path(str(paths["flow_quarantine"])),
    }
    for spec, metadata in ((FLOW_TABLE, table), (FLOW_QUARANTINE, quarantine)):
        if spec.key in context.selected_asset_keys:
            yield MaterializeResult(asset_key=spec.key, metadata=metadata)
        else:
            yield AssetMaterialization(asset_key=spec.key, partition=context.partition_key, metadata=metadata)
    if EVERY_RECORD_ACCOUNTED_FOR.key in context.selected_asset_check_keys:
        yield AssetCheckResult(
            asset_key=EVERY_RECORD_ACCOUNTED_FOR.asset_key,
            check_name=EVERY_RECORD_ACCOUNTED_FOR.name,
            passed=tally.balanced,
            metadata={
                "records_read": tally.records_read,
                "rows": tally.rows,
                "quarantined": tally.quarantined,
                "outside_hour": tally.outside_hour,
            },
        )
