"""`flow_index`: the hour's flow table in Elasticsearch, loaded by a fan-out of chunk steps.

plan_index_chunks ──► index_chunk × K ──► publish_flow_index
 (footer only,          (one row-group range    (verify counts, then swap the
  attempt index)         each, streamed)         hour's aliases atomically)

Values passed between steps are descriptors and counts, never rows.
"""

import pyarrow.parquet as pq
from dagster import DynamicOut, DynamicOutput, In, MetadataValue, Nothing, OpExecutionContext, Out, graph_asset, op

from flows_pipeline.chunk_plan import plan_chunks
from flows_pipeline.flow_indexing import BulkLimits, ChunkResult, ChunkTask, index_chunk
from flows_pipeline.flow_queries import top_talkers
from flows_pipeline.index_lifecycle import create_attempt_index, publish
from flows_pipeline.partitions import hour_of, hourly_partitions
from flows_pipeline.resources import FlowsElasticsearch, FlowStorage

# Tag and pool of the steps that talk to Elasticsearch in bulk: the executor's
# tag_concurrency_limits cap them within a run, the pool caps them across all runs.
ES_BULK_TAG = "flows/es_bulk"
ES_BULK_POOL = "flows_es_bulk"


class ItemErrorsError(RuntimeError):
    pass


@op(ins={"flow_table": In(Nothing)}, out=DynamicOut(ChunkTask))
def plan_index_chunks(context: OpExecutionContext, storage: FlowStorage, es: FlowsElasticsearch):
    """One descriptor per range of row groups, read from the Parquet footer; and a fresh attempt index."""
    hour = hour_of(context.partition_key)
    chunks = plan_chunks(storage.table_path("flow_table", hour), es.row_groups_per_chunk)
    index = create_attempt_index(es.connect(), es.layout, hour, context.run_id)
    context.log.info(
        f"{hour.key}: {sum(c.rows for c in chunks)} rows in {len(chunks)} chunks into {index} at {es.safe_url}"
    )
    for chunk in chunks:
        yield DynamicOutput(ChunkTask(index=index, chunk=chunk), mapping_key=chunk.key)


@op(name="index_chunk", tags={ES_BULK_TAG: "true"}, pool=ES_BULK_POOL)
def index_chunk_step(context: OpExecutionContext, task: ChunkTask, es: FlowsElasticsearch) -> ChunkResult:
    """Stream one chunk's rows into the attempt index in bulk bodies bounded in bytes."""
    limits = BulkLimits(max_bytes=es.bulk_max_bytes, max_docs=es.bulk_max_docs, max_in_flight=es.max_in_flight)
    result = index_chunk(es.connect(), task, limits, es.retry)
    context.log.info(
        f"{task.chunk.key}: {result.indexed} indexed, {result.failed} rejected in {result.requests} requests "
        f"({result.retries} retries), {result.seconds:.1f} s, peak RSS {result.peak_rss_mb:.0f} MB"
    )
    if result.failed:
        context.log.error(
            f"{task.chunk.key}: {result.failed} documents rejected; first reasons: {list(result.reasons)}"
        )
    if result.failed > es.tolerated_item_errors:
        raise ItemErrorsError(
            f"{task.chunk.key} of index {task.index}: Elasticsearch rejected {result.failed} documents "
            f"(tolerated per hour: {es.tolerated_item_errors}); first reasons: {list(result.reasons)}"
        )
    return result


@op(out=Out(dict))
def publish_flow_index(context: OpExecutionContext, results: list[ChunkResult], es: FlowsElasticsearch) -> dict:
    """Check that every row was indexed exactly once, then make the hour visible to searches."""
    hour = hour_of(context.partition_key)
    task = results[0].task
    rows = pq.ParquetFile(task.chunk.table_path).metadata.num_rows
    planned = sorted((r.task.chunk.first_row, r.task.chunk.rows) for r in results)
    if sum(n for _, n in planned) != rows or any(
        a + n != b for (a, n), (b, _) in zip(planned, planned[1:], strict=False)
    ):
        raise RuntimeError(f"{hour.key}: chunks {planned} do not cover the table's {rows} rows exactly once")
    failed = sum(r.failed for r in results)
    if failed > es.tolerated_item_errors:
        reasons = [reason for r in results for reason in r.reasons][:5]
        raise ItemErrorsError(
            f"{hour.key}: Elasticsearch rejected {failed} documents of index {task.index} "
            f"(tolerated: {es.tolerated_item_errors}); first reasons: {reasons}"
        )
    client = es.connect()
    replaced = publish(client, es.layout, hour, task.index, expected_docs=rows - failed)
    seconds = max(r.seconds for r in results)
    talkers = top_talkers(client, task.index)
    summary = {"index": task.index, "documents": rows - failed, "rows": rows}
    context.add_output_metadata(
        {
            "documents": rows - failed,
            "rows": rows,
            "rejected_documents": failed,
            "chunks": len(results),
            "bulk_requests": sum(r.requests for r in results),
            "bulk_retries": sum(r.retries for r in results),
            "bulk_bytes": sum(r.bytes_sent for r in results),
            "docs_per_second": round(rows / seconds, 1) if seconds else 0.0,
            "peak_chunk_rss_mb": round(max(r.peak_rss_mb for r in results), 1),
            "index": task.index,
            "hour_alias": es.layout.hour_alias(hour),
            "read_alias": es.layout.read_alias,
            "replaced_indices": ", ".join(replaced) or "none",
            "elasticsearch": MetadataValue.url(es.safe_url),
            "top_talkers": MetadataValue.md(
                "| source.ip | bytes |\n|---|---:|\n" + "\n".join(f"| {ip} | {b:,} |" for ip, b in talkers)
            ),
        }
    )
    return summary


@graph_asset(partitions_def=hourly_partitions, group_name="flows", kinds={"elasticsearch"})
def flow_index(flow_table) -> dict:
    """The hour's flows, searchable through the alias `flows-YYYY.MM.DD-HH` and the read alias `flows`."""
    tasks = plan_index_chunks(flow_table)
    return publish_flow_index(tasks.map(index_chunk_step).collect())
