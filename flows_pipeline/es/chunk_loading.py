"""Loading one chunk of an hour's flow table into its attempt index, batch by batch.

The step's memory is one read batch, its encoded lines (a body being assembled holds slices of
the few batches it spans), and `max_in_flight` bodies: bounded by configuration, never by the
hour (the incident built the whole hour's body in one process).
"""

from __future__ import annotations

import itertools
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
from elasticsearch import Elasticsearch

from flows_pipeline.errors import TerminalError
from flows_pipeline.es.bulk_encoding import BulkBody, assemble_bodies, encode_lines
from flows_pipeline.es.bulk_sender import BulkRetry, BulkSender
from flows_pipeline.es.chunk_plan import ChunkSpec
from flows_pipeline.es.cluster_health import check_index_health, index_nodes
from flows_pipeline.tables.row_groups import read_batches


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


# Rows read and encoded at once: ~2 MB of lines at ~500 bytes a flow. Bodies span batches, so
# this bounds memory without making requests smaller (measured: 16,384 rows, +60 MB a step).
READ_BATCH_ROWS = 4_096


@dataclass(frozen=True)
class BulkLimits:
    """What one index_chunk step may hold and send at once; defaults in resources.py."""

    max_bytes: int  # one bulk body, bytes
    max_docs: int  # documents in one bulk body
    max_in_flight: int  # bodies encoded-and-unsent or in flight at once


def chunk_bodies(chunk: ChunkSpec, limits: BulkLimits) -> Iterator[BulkBody]:
    """The chunk's bulk bodies, in row order, encoded one read batch at a time."""
    if chunk.rows == 0:
        return iter(())
    return assemble_bodies(_encoded_batches(chunk, READ_BATCH_ROWS), limits.max_bytes, limits.max_docs)


def _encoded_batches(chunk: ChunkSpec, batch_rows: int) -> Iterator[tuple[int, pa.LargeStringArray]]:
    first_row = chunk.first_row
    for batch in read_batches(chunk.table_path, batch_rows=batch_rows, row_groups=chunk.row_groups):
        yield first_row, encode_lines(batch, first_row)
        first_row += batch.num_rows


def index_chunk(client: Elasticsearch, url: str, task: ChunkTask, limits: BulkLimits, retry: BulkRetry) -> ChunkResult:
    """Send every row of the chunk; the result counts what Elasticsearch accepted and rejected.

    A red attempt index (its primary's node gone, e.g. before a retry of this step) fails at once,
    naming the node, rather than after every body has waited for the missing primary.
    """
    started = time.monotonic()
    check_index_health(client, url, task.index, f"loading {task.chunk.key} into {task.index}")
    sender = BulkSender(client, task.index, limits.max_in_flight, retry, known_nodes=index_nodes(client, task.index))
    tally = sender.send_all(chunk_bodies(task.chunk, limits))
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


class DocumentsRejectedError(TerminalError):
    """Elasticsearch rejected more of an hour's documents than tolerated (mapping, parsing...)."""


def check_rejections(what: str, rejected: int, tolerated: int, reasons: list[str]) -> None:
    """Raise DocumentsRejectedError when more documents were rejected than `tolerated`."""
    if rejected > tolerated:
        raise DocumentsRejectedError(
            f"{what}: Elasticsearch rejected {rejected} documents (tolerated per hour: {tolerated}, "
            f"FlowsElasticsearch.tolerated_item_errors); first reasons: {reasons}. A retry sends the same "
            "documents: fix the flow table or the index mapping, then re-materialize the hour"
        )


@dataclass(frozen=True)
class HourLoad:
    """The chunk results of one hour, added up."""

    results: tuple[ChunkResult, ...]

    @property
    def index(self) -> str:
        return self.results[0].task.index

    @property
    def table_path(self) -> str:
        return self.results[0].task.chunk.table_path

    @property
    def rejected(self) -> int:
        return sum(r.failed for r in self.results)

    @property
    def reasons(self) -> list[str]:
        return [reason for r in self.results for reason in r.reasons][:5]

    def uncovered_rows(self, table_rows: int) -> str | None:
        """Why the chunks do not cover rows 0..table_rows-1 exactly once, or None if they do."""
        spans = sorted((r.task.chunk.first_row, r.task.chunk.rows) for r in self.results)
        if sum(rows for _, rows in spans) != table_rows:
            return f"chunks hold {sum(rows for _, rows in spans)} rows, the table {table_rows}"
        for (first, rows), (following, _) in itertools.pairwise(spans):
            if first + rows != following:
                return f"chunk starting at row {first} ends at {first + rows}, the next starts at {following}"
        return None

    def metadata(self) -> dict[str, float | int]:
        slowest = max(r.seconds for r in self.results)
        indexed = sum(r.indexed for r in self.results)
        return {
            "chunks": len(self.results),
            "rejected_documents": self.rejected,
            "bulk_requests": sum(r.requests for r in self.results),
            "bulk_retries": sum(r.retries for r in self.results),
            "bulk_bytes": sum(r.bytes_sent for r in self.results),
            # chunks run in parallel: the hour took as long as its slowest chunk step
            "docs_per_second": round(indexed / slowest, 1) if slowest else 0.0,
            "peak_chunk_rss_mb": round(max(r.peak_rss_mb for r in self.results), 1),
        }
