"""`flow_summary`: the hour at a glance, as a table and as documents of the summary index."""

import pyarrow.compute as pc
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from flows_pipeline.es.summary_index import index_summary, summary_index_name
from flows_pipeline.hour import hour_of
from flows_pipeline.orchestration.assets.flow_table import flow_table
from flows_pipeline.orchestration.failures import retry_only_transient_errors
from flows_pipeline.orchestration.partitions import ONE_RUN_PER_HOUR, hourly_partitions
from flows_pipeline.orchestration.resources import FlowsElasticsearch, FlowStorage
from flows_pipeline.tables.row_groups import write_table
from flows_pipeline.tables.summary import summarize


@asset(
    partitions_def=hourly_partitions,
    group_name="flows",
    kinds={"parquet", "elasticsearch"},
    backfill_policy=ONE_RUN_PER_HOUR,
    deps=[flow_table],
)
def flow_summary(context: AssetExecutionContext, storage: FlowStorage, es: FlowsElasticsearch) -> MaterializeResult:
    """Top talkers (source, destination), top destination ports, transport totals, flows per minute."""
    with retry_only_transient_errors("indexing the hour's summary"):
        hour = hour_of(context.partition_key)
        summary = summarize(storage.table_path("flow_table", hour), hour)
        path = storage.table_path("flow_summary", hour)
        write_table(path, summary)
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
