"""`flow_summary`: the hour at a glance, as a table and as documents of the summary index."""

import pyarrow.compute as pc
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    Backoff,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)

from flows_pipeline.errors import TerminalError
from flows_pipeline.es.summary_index import ensure_summary_index, index_summary, index_totals, summary_totals
from flows_pipeline.orchestration.asset_metadata import CODE_VERSION, OWNERS, TAGS
from flows_pipeline.orchestration.assets.flow_index import flow_index
from flows_pipeline.orchestration.assets.flow_table import FLOW_TABLE
from flows_pipeline.orchestration.failures import retry_only_transient_errors
from flows_pipeline.orchestration.partitions import hourly_partitions, partition_hour
from flows_pipeline.orchestration.resources import FlowsElasticsearch, FlowStorage
from flows_pipeline.tables.row_groups import write_table
from flows_pipeline.tables.summary import summarize

SUMMARY_AGREES_WITH_INDEX = AssetCheckSpec(
    "summary_agrees_with_index",
    asset="flow_summary",
    blocking=True,
    partitions_def=hourly_partitions,
    description=(
        "The summary's flows, bytes and packets equal Elasticsearch's own count and sums through the hour alias "
        "(exact below 2^53); the summary is written only when they do."
    ),
)


class SummaryDisagreesError(TerminalError):
    """The hour's summary and its published flows have different totals (or the hour is not published)."""


@asset(
    partitions_def=hourly_partitions,
    group_name="flows",
    kinds={"parquet", "elasticsearch"},
    deps=[FLOW_TABLE.key, flow_index],
    check_specs=[SUMMARY_AGREES_WITH_INDEX],
    owners=OWNERS,
    tags=TAGS,
    code_version=CODE_VERSION,
    # transient faults only (a blocked or busy node): terminal ones fail at once (failures.py)
    retry_policy=RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS),
)
def flow_summary(context: AssetExecutionContext, storage: FlowStorage, es: FlowsElasticsearch):
    """Top talkers (source, destination), top destination ports, transport totals, flows per minute;
    written only when its totals agree with the hour's published flows."""
    with retry_only_transient_errors(context, "indexing the hour's summary"):
        hour = partition_hour(context.partition_key)
        summary = summarize(storage.table_path("flow_table", hour), hour)
        client = es.connect()
        hour_alias = es.layout.hour_alias(hour)
        mine, published = summary_totals(summary), index_totals(client, hour_alias)
        agrees = published is not None and mine.agrees_with(published)
        yield AssetCheckResult(
            check_name=SUMMARY_AGREES_WITH_INDEX.name,
            passed=agrees,
            metadata={
                "summary": str(mine),
                "index": str(published) if published else f"{hour_alias} is not published",
            },
        )
        if not agrees:
            raise SummaryDisagreesError(
                f"{hour.key}: the summary of flow_table ({mine}) does not agree with "
                + (f"{hour_alias} at {es.safe_url} ({published})" if published else f"{hour_alias}: not published")
                + "; nothing was written. Re-materialize flow_table and flow_index for the hour, then flow_summary"
            )
        path = storage.table_path("flow_summary", hour)
        write_table(path, summary)
        index = es.layout.summary_index
        ensure_summary_index(client, index, es.replicas)
        documents = index_summary(client, index, hour, summary)
    top = summary.filter(pc.equal(summary["kind"], "top_source")).slice(0, 5).to_pylist()
    yield MaterializeResult(
        metadata={
            "summary_rows": summary.num_rows,
            "summary_documents": documents,
            "summary_index": index,
            "table": MetadataValue.path(str(path)),
            "top_sources": MetadataValue.md(
                "| source.ip | bytes | flows |\n|---|---:|---:|\n"
                + "\n".join(f"| {r['key']} | {r['bytes']:,} | {r['flows']:,} |" for r in top)
            ),
        }
    )
