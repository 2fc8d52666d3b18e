"""`flow_index`: the hour's flow table in Elasticsearch, loaded by a fan-out of chunk steps.

plan_index_chunks ──► index_chunk × K ──► publish_flow_index
 (footer only,          (one row-group range    (blocking checks, then the hour's
  attempt index)         each, streamed)         aliases swapped atomically)

Values passed between steps are descriptors and counts, never rows.
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    Backoff,
    DynamicOut,
    DynamicOutput,
    In,
    Jitter,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    RetryPolicy,
    graph_asset,
    op,
)

from flows_pipeline.es.chunk_loading import ChunkResult, ChunkTask, HourLoad, check_rejections, index_chunk
from flows_pipeline.es.chunk_plan import plan_chunks
from flows_pipeline.es.index_lifecycle import (
    IndexVerificationError,
    create_attempt_index,
    make_searchable,
    swap_aliases,
    verify,
)
from flows_pipeline.es.queries import top_talkers
from flows_pipeline.hour import hour_of
from flows_pipeline.orchestration.concurrency import ES_BULK_POOL, ES_BULK_TAG, parallel_chunk_steps
from flows_pipeline.orchestration.failures import retry_only_transient_errors
from flows_pipeline.orchestration.partitions import ONE_RUN_PER_HOUR, hourly_partitions
from flows_pipeline.orchestration.resources import FlowsElasticsearch, FlowStorage
from flows_pipeline.tables.row_groups import parquet_metadata

DOCUMENTS_MATCH_TABLE = AssetCheckSpec(
    "documents_match_table",
    asset="flow_index",
    blocking=True,
    description="Documents in the hour's new index equal the flow table's rows (less tolerated rejections).",
)
NO_DUPLICATE_DOCUMENTS = AssetCheckSpec(
    "no_duplicate_documents",
    asset="flow_index",
    blocking=True,
    description="Every document is a distinct row of the hour's flow table (event.sequence = _id, in range).",
)


@op(ins={"flow_table": In(Nothing)}, out=DynamicOut(ChunkTask))
def plan_index_chunks(context: OpExecutionContext, storage: FlowStorage, es: FlowsElasticsearch):
    """One descriptor per range of row groups, read from the Parquet footer; and a fresh attempt index."""
    with retry_only_transient_errors("planning the chunks and creating the attempt index"):
        hour = hour_of(context.partition_key)
        chunks = plan_chunks(
            storage.table_path("flow_table", hour),
            parallel_chunk_steps(context.run_config),
            es.max_row_groups_per_chunk,
        )
        index = create_attempt_index(es.connect(), es.layout, hour, context.run_id)
    rows = sum(c.rows for c in chunks)
    context.log.info(f"{hour.key}: {rows} rows in {len(chunks)} chunks into {index} at {es.safe_url}")
    for chunk in chunks:
        yield DynamicOutput(ChunkTask(index=index, chunk=chunk), mapping_key=chunk.key)


# Only transient faults are retried (connection lost, throttled past the sender's own retries, a
# killed step process); a retried chunk rewrites the same document ids, so it cannot duplicate
# anything. Jitter keeps retries of many chunks apart.
@op(
    name="index_chunk",
    tags={ES_BULK_TAG: "true"},
    pool=ES_BULK_POOL,
    retry_policy=RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS),
)
def index_chunk_step(context: OpExecutionContext, task: ChunkTask, es: FlowsElasticsearch) -> ChunkResult:
    """Stream one chunk's rows into the attempt index in bulk bodies bounded in bytes."""
    with retry_only_transient_errors(f"loading {task.chunk.key} into {task.index}"):
        result = index_chunk(es.connect(), es.safe_url, task, es.limits, es.retry)
        context.log.info(
            f"{task.chunk.key}: {result.indexed} indexed, {result.failed} rejected in {result.requests} requests "
            f"({result.retries} retries), {result.seconds:.1f} s, peak RSS {result.peak_rss_mb:.0f} MB"
        )
        if result.failed:
            context.log.error(f"{task.chunk.key}: {result.failed} rejected; first reasons: {list(result.reasons)}")
        check_rejections(
            f"{task.chunk.key} of index {task.index} at {es.safe_url}",
            result.failed,
            es.tolerated_item_errors,
            list(result.reasons),
        )
    return result


@op(
    out={
        "result": Out(dict),
        DOCUMENTS_MATCH_TABLE.get_python_identifier(): Out(is_required=False),
        NO_DUPLICATE_DOCUMENTS.get_python_identifier(): Out(is_required=False),
    }
)
def publish_flow_index(context: OpExecutionContext, results: list[ChunkResult], es: FlowsElasticsearch):
    """Check that every row was indexed exactly once, and only then make the hour visible to searches."""
    with retry_only_transient_errors("verifying and publishing the hour's index"):
        yield from _publish(context, HourLoad(tuple(results)), es)


def _publish(context: OpExecutionContext, load: HourLoad, es: FlowsElasticsearch):
    hour = hour_of(context.partition_key)
    rows = parquet_metadata(load.table_path).num_rows
    if problem := load.uncovered_rows(rows):
        raise IndexVerificationError(f"{hour.key}: the chunk plan does not cover the table exactly once: {problem}")
    check_rejections(
        f"{hour.key}, index {load.index} at {es.safe_url}", load.rejected, es.tolerated_item_errors, load.reasons
    )

    client = es.connect()
    make_searchable(client, es.layout, load.index)
    found = verify(client, load.index, expected_docs=rows - load.rejected, rows=rows)
    facts = {"documents": found.documents, "expected": found.expected, "index": load.index}
    yield AssetCheckResult(
        asset_key="flow_index", check_name=DOCUMENTS_MATCH_TABLE.name, passed=found.counts_match, metadata=facts
    )
    yield AssetCheckResult(
        asset_key="flow_index",
        check_name=NO_DUPLICATE_DOCUMENTS.name,
        passed=found.no_duplicates,
        metadata={"min_sequence": found.min_sequence or 0, "max_sequence": found.max_sequence or 0, "rows": rows},
    )
    if not (found.counts_match and found.no_duplicates):
        raise IndexVerificationError(
            f"{hour.key}: index {load.index} at {es.safe_url} failed verification ({found}); the hour was not "
            f"published and {es.layout.hour_alias(hour)} still points at the previous load. Re-materialize the hour"
        )

    replaced = swap_aliases(client, es.layout, hour, load.index)
    talkers = top_talkers(client, load.index)
    yield Output(
        {"index": load.index, "documents": found.documents, "rows": rows},
        "result",
        metadata={
            "documents": found.documents,
            "rows": rows,
            **load.metadata(),
            "index": load.index,
            "hour_alias": es.layout.hour_alias(hour),
            "read_alias": es.layout.read_alias,
            "replaced_indices": ", ".join(replaced) or "none",
            "elasticsearch": MetadataValue.url(es.safe_url),
            "top_talkers": MetadataValue.md(
                "| source.ip | bytes |\n|---|---:|\n" + "\n".join(f"| {ip} | {b:,} |" for ip, b in talkers)
            ),
        },
    )


@graph_asset(
    partitions_def=hourly_partitions,
    group_name="flows",
    kinds={"elasticsearch"},
    check_specs=[DOCUMENTS_MATCH_TABLE, NO_DUPLICATE_DOCUMENTS],
    backfill_policy=ONE_RUN_PER_HOUR,
)
def flow_index(flow_table):
    """The hour's flows, searchable through the alias `flows-YYYY.MM.DD-HH` and the read alias `flows`."""
    tasks = plan_index_chunks(flow_table)
    result, counts_check, duplicates_check = publish_flow_index(tasks.map(index_chunk_step).collect())
    return {
        "result": result,
        DOCUMENTS_MATCH_TABLE.get_python_identifier(): counts_check,
        NO_DUPLICATE_DOCUMENTS.get_python_identifier(): duplicates_check,
    }
