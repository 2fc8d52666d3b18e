"""`raw_flows`, `flow_table`, `flow_summary`: an hour of flows as received, typed, and summarized."""

import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from flows_pipeline.flow_sources import SourceReport, read_hour
from flows_pipeline.flow_summary import index_summary, summarize, summary_index_name
from flows_pipeline.flow_tables import TABLES, build_flow_table, recount, write_raw_flows
from flows_pipeline.partitions import ONE_RUN_PER_HOUR, hour_of, hourly_partitions
from flows_pipeline.resources import FlowsElasticsearch, FlowSource, FlowStorage


@asset(partitions_def=hourly_partitions, group_name="flows", kinds={"parquet"}, backfill_policy=ONE_RUN_PER_HOUR)
def raw_flows(context: AssetExecutionContext, storage: FlowStorage, source: FlowSource) -> MaterializeResult:
    """The hour's flow records as the source delivered them (GoFlow2 field names); unreadable ones apart."""
    hour = hour_of(context.partition_key)
    settings = source.settings()
    report = SourceReport()
    stats = write_raw_flows(
        read_hour(settings, hour, report, batch_rows=storage.row_group_rows),
        raw_path=storage.table_path("raw_flows", hour),
        raw_quarantine_path=storage.table_path("raw_quarantine", hour),
        row_group_rows=storage.row_group_rows,
    )
    for path, problem in report.skipped.items():
        context.log.warning(f"skipped unreadable file {path}: {problem}")
    return MaterializeResult(
        metadata={
            "rows": stats.rows,
            "rejected_on_read": stats.rejected,
            "source": settings.kind,
            "files_read": len(report.files),
            "files_skipped": len(report.skipped),
            "skipped_files": MetadataValue.json(report.skipped),
            "path": MetadataValue.path(str(storage.table_path("raw_flows", hour))),
        }
    )


@asset(
    partitions_def=hourly_partitions,
    group_name="flows",
    kinds={"parquet"},
    backfill_policy=ONE_RUN_PER_HOUR,
    deps=[raw_flows],
    check_specs=[AssetCheckSpec("every_record_accounted_for", asset="flow_table", blocking=True)],
)
def flow_table(context: AssetExecutionContext, storage: FlowStorage):
    """The hour's flows in the typed ECS flow schema; invalid records go to the quarantine table."""
    hour = hour_of(context.partition_key)
    paths = {name: storage.table_path(name, hour) for name in TABLES}
    stats = build_flow_table(
        raw_path=paths["raw_flows"],
        raw_quarantine_path=paths["raw_quarantine"],
        hour=hour,
        table_path=paths["flow_table"],
        quarantine_path=paths["flow_quarantine"],
        row_group_rows=storage.row_group_rows,
    )
    yield MaterializeResult(
        metadata={
            "rows": stats.rows,
            "records_read": stats.records_read,
            "quarantined": stats.quarantined,
            "outside_hour": stats.outside_hour,
            "row_groups": stats.row_groups,
            "bytes": MetadataValue.int(stats.bytes_on_disk),
            "path": MetadataValue.path(str(paths["flow_table"])),
            "quarantine_path": MetadataValue.path(str(paths["flow_quarantine"])),
        }
    )
    # recounted from the files as written, independently of the counters above
    tally = recount(paths, hour)
    yield AssetCheckResult(
        check_name="every_record_accounted_for",
        passed=tally.balanced,
        metadata={
            "records_read": tally.records_read,
            "rows": tally.rows,
            "quarantined": tally.quarantined,
            "outside_hour": tally.outside_hour,
        },
    )


@asset(
    partitions_def=hourly_partitions,
    group_name="flows",
    kinds={"parquet", "elasticsearch"},
    backfill_policy=ONE_RUN_PER_HOUR,
    deps=[flow_table],
)
def flow_summary(context: AssetExecutionContext, storage: FlowStorage, es: FlowsElasticsearch) -> MaterializeResult:
    """Top talkers (source, destination), top destination ports, transport totals, flows per minute."""
    hour = hour_of(context.partition_key)
    summary = summarize(storage.table_path("flow_table", hour), hour)
    path = storage.table_path("flow_summary", hour)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(summary, path)
    index = summary_index_name(es.index_prefix)
    documents = index_summary(es.connect(), index, hour, summary)
    top = summary.filter(pc.equal(summary["kind"], "top_source")).slice(0, 5).to_pylist()
    return MaterializeResult(
        metadata={
            "summary_rows": summary.num_rows,
            "summary_documents": documents,
            "summary_index": index,
            "path": MetadataValue.path(str(path)),
            "top_sources": MetadataValue.md(
                "| source.ip | bytes | flows |\n|---|---:|---:|\n"
                + "\n".join(f"| {r['key']} | {r['bytes']:,} | {r['flows']:,} |" for r in top)
            ),
        }
    )
