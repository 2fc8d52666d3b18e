"""Loading one chunk of an hour's flow table into its attempt index, batch by batch.

The step's memory is one read batch, its encoded lines (a body being assembled holds slices of
the few batches it spans), and `max_in_flight` bodies: bounded by configuration, never by the
hour (the incident built the whole hour's body in one process).
"""

from __future__ import annotations

import itertools
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
from elasticsearch import Elasticsearch

from flows_pipeline.errors import TerminalError
from flows_pipeline.es.bulk_encoding import BulkBody, assemble_bodies, encode_lines
from flows_pipeline.es.bulk_sender import BulkRetry, BulkSender
from flows_pipeline.es.chunk_plan import ChunkSpec
from flows_pipeline.es.cluster_health import check_index_health, index_nodes
from flows_pipeline.es.index_lifecycle import AttemptReplacedError, LoadAttempt
from flows_pipeline.tables.row_groups import read_batches


@dataclass(frozen=True)
class ChunkTask:
    """What the plan step hands each index_chunk step: where to read, where to write."""

    attempt: LoadAttempt
    chunk: ChunkSpec
    credentials_expiry: tuple[str, ...] = ()  # the plan's notices of credentials expiring soon, for the metadata


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


def chunk_bodies(task: ChunkTask, limits: BulkLimits) -> Iterator[BulkBody]:
    """The chunk's bulk bodies, in row order, encoded one read batch at a time."""
    if task.chunk.rows == 0:
        return iter(())
    return assemble_bodies(_encoded_batches(task, READ_BATCH_ROWS), limits.max_bytes, limits.max_docs)


def _encoded_batches(task: ChunkTask, batch_rows: int) -> Iterator[tuple[int, pa.StringArray]]:
    chunk, attempt = task.chunk, task.attempt
    first_row = chunk.first_row
    for batch in read_batches(chunk.table_path, batch_rows=batch_rows, row_groups=chunk.row_groups):
        yield first_row, encode_lines(batch, first_row, attempt.id_prefix, attempt.token)
        first_row += batch.num_rows


def use_system_allocator() -> None:
    """Arrow allocates through the C library's malloc in this process, not its bundled mimalloc.

    mimalloc keeps freed pages for reuse, so each chunk step held ~25 MB more private memory for
    the same work: 4 chunk steps at 1M rows, tree PSS 828 -> 720 MB with the forkserver and the
    steps on malloc from their start (orchestration/step_allocator.py), 748 MB when only the
    steps switch (here: a spawned step); encoding and building flow_table as fast
    (bench/RESULTS.md, session 4).
    """
    pa.set_memory_pool(pa.system_memory_pool())


PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True)
class ChunkProgress:
    """How far a chunk is: rows handed to the sender (at most `max_in_flight` bodies are still in flight)."""

    chunk_key: str
    rows_sent: int
    rows: int
    seconds: float

    @property
    def docs_per_second(self) -> float:
        return self.rows_sent / self.seconds if self.seconds else 0.0

    @property
    def seconds_left(self) -> float | None:
        rate = self.docs_per_second
        return (self.rows - self.rows_sent) / rate if rate else None

    def __str__(self) -> str:
        left = f", ~{self.seconds_left:.0f} s left" if self.seconds_left is not None else ""
        share = self.rows_sent / self.rows if self.rows else 1.0
        return (
            f"{self.chunk_key}: {self.rows_sent:,} of {self.rows:,} rows sent ({share:.0%}), "
            f"{self.docs_per_second:,.0f} documents/s{left}"
        )


def _reporting(
    bodies: Iterator[BulkBody], task: ChunkTask, report: Callable[[ChunkProgress], None], every_s: float
) -> Iterator[BulkBody]:
    """The bodies, calling `report` at most every `every_s` seconds as they are handed on."""
    started = last = time.monotonic()
    sent = 0
    for body in bodies:
        yield body
        sent += body.docs
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            report(ChunkProgress(task.chunk.key, sent, task.chunk.rows, now - started))


def index_chunk(
    client: Elasticsearch,
    url: str,
    task: ChunkTask,
    limits: BulkLimits,
    retry: BulkRetry,
    report: Callable[[ChunkProgress], None] | None = None,
) -> ChunkResult:
    """Send every row of the chunk; the result counts what Elasticsearch accepted and rejected.

    A red bucket index (its primary's node gone, e.g. before a retry of this step) fails at once,
    naming the node, rather than after every body has waited for the missing primary. `report`,
    when given, is called with the chunk's progress every PROGRESS_EVERY_S seconds.
    """
    started = time.monotonic()
    use_system_allocator()  # forked steps start on it (orchestration/step_allocator.py); spawned ones not
    bucket = task.attempt.bucket
    check_index_health(client, url, bucket, f"loading {task.chunk.key} into {task.attempt.alias}")
    # through the attempt's alias, which must exist: a removed attempt is refused, never auto-created
    sender = BulkSender(
        client,
        task.attempt.alias,
        limits.max_in_flight,
        retry,
        require_alias=True,
        known_nodes=index_nodes(client, bucket),
    )
    bodies = chunk_bodies(task, limits)
    if report is not None:
        bodies = _reporting(bodies, task, report, PROGRESS_EVERY_S)
    tally = sender.send_all(bodies)
    if tally.failed and any("require_alias" in reason for reason in tally.reasons):
        raise AttemptReplacedError(
            f"{task.chunk.key}: attempt {task.attempt.alias} is gone while it was loading: a later run of this "
            "hour published it (this load is not needed), or someone removed the alias. Nothing was auto-created; "
            "re-materialize the hour if no other run published it"
        )
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
    def attempt(self) -> LoadAttempt:
        return self.results[0].task.attempt

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
            "bulk_bytes (bytes)": sum(r.bytes_sent for r in self.results),
            # chunks run in parallel: the hour took as long as its slowest chunk step
            "load_rate (documents/s)": round(indexed / slowest, 1) if slowest else 0.0,
            "load_time (s)": round(slowest, 1),
            "peak_chunk_rss (MB)": round(max(r.peak_rss_mb for r in self.results), 1),
        }
