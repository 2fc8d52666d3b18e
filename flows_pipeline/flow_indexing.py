"""Loading one chunk of an hour's flow table into its attempt index, batch by batch.

The step's memory is one read batch, its encoded lines, and `max_in_flight` bodies: bounded by
configuration, never by the hour (the incident built the whole hour's body in one process).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass

from elasticsearch import Elasticsearch

from flows_pipeline.bulk_encoding import BulkBody, encode_lines, split_bodies
from flows_pipeline.bulk_sender import BulkSender, RetryPolicy
from flows_pipeline.chunk_plan import ChunkSpec
from flows_pipeline.table_writer import read_batches


@dataclass(frozen=True)
class ChunkTask:
    """What the plan step hands each index_chunk step: where to read, where to write."""

    index: str
    chunk: ChunkSpec


@dataclass(frozen=True)
class ChunkResult:
    task: ChunkTask
    indexed: int
    failed: int
    requests: int
    retries: int
    bytes_sent: int
    reasons: tuple[str, ...]
    seconds: float
    peak_rss_mb: float


@dataclass(frozen=True)
class BulkLimits:
    max_bytes: int
    max_docs: int
    max_in_flight: int
    read_batch_rows: int = 16_384  # rows encoded at once; ~8 MB of lines at ~480 bytes a flow


def chunk_bodies(chunk: ChunkSpec, limits: BulkLimits) -> Iterator[BulkBody]:
    """The chunk's bulk bodies, in row order, encoded one read batch at a time."""
    if chunk.rows == 0:
        return
    first_row = chunk.first_row
    for batch in read_batches(chunk.table_path, batch_rows=limits.read_batch_rows, row_groups=chunk.row_groups):
        lines = encode_lines(batch, first_row)
        yield from split_bodies(lines, first_row, limits.max_bytes, limits.max_docs)
        first_row += batch.num_rows


def index_chunk(client: Elasticsearch, task: ChunkTask, limits: BulkLimits, retry: RetryPolicy) -> ChunkResult:
    """Send every row of the chunk; the result counts what Elasticsearch accepted and rejected."""
    started = time.monotonic()
    tally = BulkSender(client, task.index, limits.max_in_flight, retry).send_all(chunk_bodies(task.chunk, limits))
    return ChunkResult(
        task=task,
        indexed=tally.indexed,
        failed=tally.failed,
        requests=tally.requests,
        retries=tally.retries,
        bytes_sent=tally.bytes_sent,
        reasons=tuple(tally.reasons),
        seconds=time.monotonic() - started,
        # ru_maxrss is in KiB on Linux: the step process's own peak, reported per chunk
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
