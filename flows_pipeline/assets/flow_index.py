"""`flow_index`: the hour's flow table in Elasticsearch, loaded by a fan-out of chunk steps.

plan_index_chunks ──► index_chunk × K ──► publish_flow_index
 (footer only,          (one row-group range    (blocking checks, then the hour's
  attempt index)         each, streamed)         aliases swapped atomically)

Values passed between steps are descriptors and counts, never rows.
"""

import pyarrow.parquet as pq
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

from flows_pipeline.chunk_plan import plan_chunks
from flows_pipeline.flow_indexing import BulkLimits, ChunkResult, ChunkTask, HourLoad, index_chunk
from flows_pipeline.flow_queries import top_talkers
from flows_pipeline.index_lifecycle import create_attempt_index, make_searchable, swap_aliases, verify
from flows_pipeline.partitions import ONE_RUN_PER_HOUR, hour_of, hourly_partitions
from flows_pipeline.resources import FlowsElasticsearch, FlowStorage

# Tag and pool of the steps that talk to Elasticsearch in bulk: the executor's
# tag_concurrency_limits cap them within a run, the pool caps them across all runs.
ES_BULK_TAG = "flows/es_bulk"
ES_BULK_POOL = "flows_es_bulk"
DEFAULT_ES_BULK_STEPS = 2  # the executor's default `es_bulk_steps` (jobs.py)

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


class ItemErrorsError(RuntimeError):
    pass


class IndexVerificationError(RuntimeError):
    pass


@op(ins={"flow_table": In(Nothing)}, out=DynamicOut(ChunkTask))
def plan_index_chunks(context: OpExecutionContext, storage: FlowStorage, es: FlowsElasticsearch):
    """One descriptor per range of row groups, read from the Parquet footer; and a fresh attempt index."""
    hour = hour_of(context.partition_key)
    chunks = plan_chunks(
        storage.table_path("flow_table", hour), _parallel_chunk_steps(context), es.max_row_groups_per_chunk
    )
    index = create_attempt_index(es.connect(), es.layout, hour, context.run_id)
    rows = sum(c.rows for c in chunks)
    context.log.info(f"{hour.key}: {rows} rows in {len(chunks)} chunks into {index} at {es.safe_url}")
    for chunk in chunks:
        yield DynamicOutput(ChunkTask(index=index, chunk=chunk), mapping_key=chunk.key)


def _parallel_chunk_steps(context: OpExecutionContext) -> int:
    """How many index_chunk steps this run executes at once: the executor's `es_bulk_steps` (jobs.py),
    as the run's config sets it (schedules, backfills and the UI set none: the executor's default).
    The instance's `flows_es_bulk` pool may let fewer run at once when several runs are in progress."""
    executor = context.run_config.get("execution", {}).get("config", {})
    steps = executor.get("es_bulk_steps", DEFAULT_ES_BULK_STEPS)
    most = executor.get("max_concurrent", 0)  # 0: Dagster's "as many as CPUs"
    return max(1, min(steps, most) if most > 0 else steps)


# A retried chunk rewrites the same document ids, so retrying a step that died half-way (a killed
# process, a node restart) cannot duplicate anything. Jitter keeps retries of many chunks apart.
@op(
    name="index_chunk",
    tags={ES_BULK_TAG: "true"},
    pool=ES_BULK_POOL,
    retry_policy=RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS),
)
def index_chunk_step(context: OpExecutionContext, task: ChunkTask, es: FlowsElasticsearch) -> ChunkResult:
    """Stream one chunk's rows into the attempt index in bulk bodies bounded in bytes."""
    limits = BulkLimits(max_bytes=es.bulk_max_bytes, max_docs=es.bulk_max_docs, max_in_flight=es.max_in_flight)
    result = index_chunk(es.connect(), task, limits, es.retry)
    context.log.info(
        f"{task.chunk.key}: {result.indexed} indexed, {result.failed} rejected in {result.requests} requests "
        f"({result.retries} retries), {result.seconds:.1f} s, peak RSS {result.peak_rss_mb:.0f} MB"
    )
    if result.failed:
        context.log.error(f"{task.chunk.key}: {result.failed} rejected; first reasons: {list(result.reasons)}")
    if result.failed > es.tolerated_item_errors:
        raise ItemErrorsError(
            f"{task.chunk.key} of index {task.index}: Elasticsearch rejected {result.failed} documents "
            f"(tolerated per hour: {es.tolerated_item_errors}); first reasons: {list(result.reasons)}"
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
    hour = hour_of(context.partition_key)
    load = HourLoad(tuple(results))
    rows = pq.ParquetFile(load.table_path).metadata.num_rows
    if problem := load.uncovered_rows(rows):
        raise IndexVerificationError(f"{hour.key}: the chunk plan does not cover the table exactly once: {problem}")
    if load.rejected > es.tolerated_item_errors:
        raise ItemErrorsError(
            f"{hour.key}: Elasticsearch rejected {load.rejected} documents of index {load.index} "
            f"(tolerated: {es.tolerated_item_errors}); first reasons: {load.reasons}"
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
            f"{hour.key}: index {load.index} failed verification ({found}); the hour was not published and "
            f"{es.layout.hour_alias(hour)} still points at the previous load"
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
