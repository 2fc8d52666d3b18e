"""`raw_flows`, `flow_table`, `flow_summary`: an hour of flows as received, typed, and summarized."""

import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from flows_pipeline.flow_summary import index_summary, summarize, summary_index_name
from flows_pipeline.flow_tables import build_flow_table, write_raw_flows
from flows_pipeline.partitions import ONE_RUN_PER_HOUR, hour_of, hourly_partitions
from flows_pipeline.resources import FlowsElasticsearch, FlowSource, FlowStorage
from flows_pipeline.synthetic import synthetic_batches


@asset(partitions_def=hourly_partitions, group_name="flows", kinds={"parquet"}, backfill_policy=ONE_RUN_PER_HOUR)
def raw_flows(context: AssetExecutionContext, storage: FlowStorage, source: FlowSource) -> MaterializeResult:
    """The hour's flow records exactly as the source delivered them (GoFlow2 field names)."""
    hour = hour_of(context.partition_key)
    path = storage.table_path("raw_flows", hour)
    if source.kind != "synthetic":
        raise ValueError(f"unknown flow source kind {source.kind!r}; supported: synthetic")
    rows = write_raw_flows(synthetic_batches(hour, source.synthetic_rows_per_hour), path, storage.row_group_rows)
    return MaterializeResult(metadata={"rows": rows, "path": MetadataValue.path(str(path)), "source": source.kind})


@asset(
    partitions_def=hourly_partitions,
    group_name="flows",
    kinds={"parquet"},
    backfill_policy=ONE_RUN_PER_HOUR,
    deps=[raw_flows],
)
def flow_table(context: AssetExecutionContext, storage: FlowStorage, source: FlowSource) -> MaterializeResult:
    """The hour's flows in the typed ECS flow schema; invalid records go to the quarantine table."""
    hour = hour_of(context.partition_key)
    table_path = storage.table_path("flow_table", hour)
    stats = build_flow_table(
        raw_path=storage.table_path("raw_flows", hour),
        hour=hour,
        table_path=table_path,
        quarantine_path=storage.table_path("flow_quarantine", hour),
        row_group_rows=storage.row_group_rows,
        source=source.kind,
    )
    return MaterializeResult(
        metadata={
            "rows": stats.rows,
            "records_read": stats.records_read,
            "quarantined": stats.quarantined,
            "outside_hour": stats.outside_hour,
            "row_groups": stats.row_groups,
            "bytes": MetadataValue.int(stats.bytes_on_disk),
            "path": MetadataValue.path(str(table_path)),
        }
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
