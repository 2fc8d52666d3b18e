"""`flow_index`: the hour's flow table in Elasticsearch, loaded by a fan-out of chunk steps.

plan_index_chunks ──► index_chunk × K ──► publish_flow_index
 (footer only,          (one row-group range    (blocking checks, then the hour's
  attempt index)         each, streamed)         aliases swapped atomically)

Values passed between steps are descriptors and counts, never rows.
"""

import time

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
from flows_pipeline.es.credentials_expiry import expiry_notices
from flows_pipeline.es.index_lifecycle import IndexVerificationError, prepare_load, publish
from flows_pipeline.es.queries import top_talkers
from flows_pipeline.es.replaced_attempts import delete_replaced
from flows_pipeline.orchestration.asset_metadata import CODE_VERSION, OWNERS, TAGS
from flows_pipeline.orchestration.concurrency import (
    CELERY_QUEUE_TAG,
    CHUNK_QUEUE,
    ES_BULK_POOL,
    ES_BULK_TAG,
    parallel_chunk_steps,
)
from flows_pipeline.orchestration.failures import retry_only_transient_errors
from flows_pipeline.orchestration.partitions import hourly_partitions, partition_hour
from flows_pipeline.orchestration.resources import FlowsElasticsearch, FlowStorage, index_prefix_from_env
from flows_pipeline.orchestration.stale_runs import before_claiming_slots
from flows_pipeline.tables.row_groups import parquet_metadata

INDEX_PREFIX = index_prefix_from_env()  # for the descriptions the UI shows

DOCUMENTS_MATCH_TABLE = AssetCheckSpec(
    "documents_match_table",
    asset="flow_index",
    blocking=True,
    partitions_def=hourly_partitions,
    description="Documents in the hour's new index equal the flow table's rows (less tolerated rejections).",
)
NO_DUPLICATE_DOCUMENTS = AssetCheckSpec(
    "no_duplicate_documents",
    asset="flow_index",
    blocking=True,
    partitions_def=hourly_partitions,
    description="Every document is a distinct row of the hour's flow table (event.sequence = _id, in range).",
)


@op(ins={"flow_table": In(Nothing)}, out=DynamicOut(ChunkTask))
def plan_index_chunks(context: OpExecutionContext, storage: FlowStorage, es: FlowsElasticsearch):
    """One descriptor per range of row groups, read from the Parquet footer; and the run's load attempt."""
    before_claiming_slots(context)
    with retry_only_transient_errors(context, "planning the chunks and preparing the load attempt"):
        hour = partition_hour(context.partition_key)
        chunks = plan_chunks(
            storage.table_path("flow_table", hour),
            parallel_chunk_steps(context.run_config),
            es.max_row_groups_per_chunk,
        )
        client = es.connect()
        expiring_soon = expiry_notices(client, es.connection(), es.expiry_warn_days)
        for notice in expiring_soon:
            context.log.warning(f"{hour.key}: {notice}")
        attempt = prepare_load(client, es.layout, es.safe_url, hour, context.run_id, now_ms=int(time.time() * 1000))
    rows = sum(c.rows for c in chunks)
    context.log.info(
        f"{hour.key}: {rows} rows in {len(chunks)} chunks into {attempt.alias} (bucket {attempt.bucket}) "
        f"at {es.safe_url}"
    )
    for chunk in chunks:
        yield DynamicOutput(
            ChunkTask(attempt=attempt, chunk=chunk, credentials_expiry=expiring_soon), mapping_key=chunk.key
        )


# Only transient faults are retried (connection lost, throttled past the sender's own retries, a
# killed step process); a retried chunk rewrites the same document ids, so it cannot duplicate
# anything. Jitter keeps retries of many chunks apart.
@op(
    name="index_chunk",
    tags={ES_BULK_TAG: "true", CELERY_QUEUE_TAG: CHUNK_QUEUE},
    pool=ES_BULK_POOL,
    retry_policy=RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS),
)
def index_chunk_step(context: OpExecutionContext, task: ChunkTask, es: FlowsElasticsearch) -> ChunkResult:
    """Stream one chunk's rows into the attempt index in bulk bodies bounded in bytes."""
    with retry_only_transient_errors(context, f"loading {task.chunk.key} into {task.attempt.alias}"):
        progress = lambda p: context.log.info(str(p))  # noqa: E731 - one line, for the run's log
        result = index_chunk(es.connect(), es.safe_url, task, es.limits, es.retry, report=progress)
        context.log.info(
            f"{task.chunk.key}: {result.indexed} indexed, {result.failed} rejected in {result.requests} requests "
            f"({result.retries} retries), {result.seconds:.1f} s, peak RSS {result.peak_rss_mb:.0f} MB"
        )
        if result.failed:
            context.log.error(f"{task.chunk.key}: {result.failed} rejected; first reasons: {list(result.reasons)}")
        check_rejections(
            f"{task.chunk.key} of {task.attempt.alias} at {es.safe_url}",
            result.failed,
            es.tolerated_item_errors,
            list(result.reasons),
        )
    return result


@op(
    out={
        # Nothing: the hour lives in Elasticsearch, so no IO manager pickles a value (nor shows its `path`)
        "result": Out(Nothing),
        DOCUMENTS_MATCH_TABLE.get_python_identifier(): Out(is_required=False),
        NO_DUPLICATE_DOCUMENTS.get_python_identifier(): Out(is_required=False),
    }
)
def publish_flow_index(context: OpExecutionContext, results: list[ChunkResult], es: FlowsElasticsearch):
    """Check that every row was indexed exactly once, and only then make the hour visible to searches."""
    with retry_only_transient_errors(context, "verifying and publishing the hour's index"):
        yield from _publish(context, HourLoad(tuple(results)), es)


def _publish(context: OpExecutionContext, load: HourLoad, es: FlowsElasticsearch):
    hour = partition_hour(context.partition_key)
    attempt = load.attempt
    rows = parquet_metadata(load.table_path).num_rows
    if problem := load.uncovered_rows(rows):
        raise IndexVerificationError(f"{hour.key}: the chunk plan does not cover the table exactly once: {problem}")
    check_rejections(
        f"{hour.key}, {attempt.alias} at {es.safe_url}", load.rejected, es.tolerated_item_errors, load.reasons
    )

    client = es.connect()
    published = publish(client, es.layout, hour, attempt, expected_docs=rows - load.rejected, rows=rows)
    found = published.verification
    yield AssetCheckResult(
        asset_key="flow_index",
        check_name=DOCUMENTS_MATCH_TABLE.name,
        passed=found.counts_match,
        metadata={"documents": found.documents, "expected": found.expected, "attempt": attempt.alias},
    )
    yield AssetCheckResult(
        asset_key="flow_index",
        check_name=NO_DUPLICATE_DOCUMENTS.name,
        passed=found.no_duplicates,
        metadata={"min_sequence": found.min_sequence or 0, "max_sequence": found.max_sequence or 0, "rows": rows},
    )
    if not found.passed:
        raise IndexVerificationError(
            f"{hour.key}: attempt {attempt.alias} at {es.safe_url} failed verification ({found}); the hour was not "
            f"published and {es.layout.hour_alias(hour)} still selects the previous load. Re-materialize the hour"
        )
    # outside the publication lock: no alias selects these documents any more
    started = time.monotonic()
    deletion = delete_replaced(client, published.replaced, in_flight=es.delete_in_flight)
    deletion_s = time.monotonic() - started
    context.log.info(
        f"{hour.key}: published {attempt.alias}; deleted {deletion.deleted} documents of {len(published.replaced)} "
        f"replaced attempt(s) in {deletion_s:.1f} s ({deletion.method})"
        + (f"; {deletion.left} could not be deleted now: {'; '.join(deletion.problems)}" if deletion.left else "")
    )
    hour_alias = es.layout.hour_alias(hour)
    talkers = top_talkers(client, hour_alias)
    yield Output(
        None,
        "result",
        metadata={
            "dagster/row_count": found.documents,
            "documents": found.documents,
            "rows": rows,
            **load.metadata(),
            "attempt": attempt.alias,
            "bucket_index": attempt.bucket,
            "hour_alias": hour_alias,
            "read_alias": es.layout.read_alias,
            "replaced_attempts": ", ".join(token for _, token in published.replaced) or "none",
            "removed_hourly_indices": ", ".join(published.removed_indices) or "none",
            "deleted_documents": deletion.deleted,
            "deletion": f"{deletion.method}, {deletion_s:.1f} s" + (f", {deletion.left} left" if deletion.left else ""),
            "credentials_expiry": "; ".join(load.results[0].task.credentials_expiry)
            or f"none within {es.expiry_warn_days} days",
            "elasticsearch": MetadataValue.url(f"{es.safe_url}/{hour_alias}/_search?size=20"),
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
    owners=OWNERS,
    tags=TAGS,
    code_version=CODE_VERSION,
    description=(
        f"The hour's flows, searchable through the hour alias `{INDEX_PREFIX}-YYYY.MM.DD-HH` and the read alias "
        f"`{INDEX_PREFIX}` (FLOWS_INDEX_PREFIX): filtered aliases on the hour's day (or week) bucket index."
    ),
)
def flow_index(flow_table):
    tasks = plan_index_chunks(flow_table)
    result, counts_check, duplicates_check = publish_flow_index(tasks.map(index_chunk_step).collect())
    return {
        "result": result,
        DOCUMENTS_MATCH_TABLE.get_python_identifier(): counts_check,
        NO_DUPLICATE_DOCUMENTS.get_python_identifier(): duplicates_check,
    }
