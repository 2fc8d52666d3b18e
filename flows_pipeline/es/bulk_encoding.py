"""Flow rows -> Elasticsearch `_bulk` bodies, bounded in bytes, encoded column-wise in Arrow.

Every value in the flow schema is a number, a timestamp, an IP address or a protocol name that
the normalizer validated, so none needs JSON escaping: each row's action and document lines are
joined from string-cast columns in one Arrow kernel, and a bulk body is a contiguous slice of
the resulting buffer. No Python object is created per row or per field.

Document ids are the row's number within the hour. A retried chunk, or a retried request,
rewrites the same ids, so it can never add a duplicate; ids in load order are also the cheap
case for Lucene's id lookups.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flows_pipeline.errors import ConfigurationError
from flows_pipeline.es.flow_mapping import ATTEMPT_FIELD
from flows_pipeline.hour import MS_PER_HOUR


@dataclass(frozen=True)
class BulkBody:
    first_row: int  # hour row number of the body's first document
    docs: int
    payload: bytes


def _iso_milliseconds(column: pa.Array) -> pa.Array:
    """Millisecond timestamps as quoted ISO 8601 UTC text, e.g. "2021-10-28T03:05:09.123Z".

    For columns with nulls or spanning many hours (encode_lines looks the others up first,
    _iso_pieces): Arrow's strftime costs ~1 µs a value, but the flows of one hour share a handful
    of "YYYY-MM-DDTHH:" prefixes, so only those go through strftime and minutes, seconds and
    milliseconds are integer arithmetic (~15x cheaper per value).
    """
    millis = pc.cast(column, pa.int64())
    within = pc.subtract(
        millis, pc.multiply(pc.floor(pc.divide(millis, float(MS_PER_HOUR))).cast(pa.int64()), MS_PER_HOUR)
    )
    hours = pc.subtract(millis, within)
    distinct = pc.unique(hours)
    prefixes = pc.strftime(pc.cast(distinct, pa.timestamp("ms", tz="UTC")), format='"%Y-%m-%dT%H:')
    prefix = pc.take(prefixes, pc.index_in(hours, value_set=distinct))
    minutes = _padded(pc.divide(within, 60_000), 2)
    seconds = _padded(pc.divide(pc.subtract(within, pc.multiply(pc.divide(within, 60_000), 60_000)), 1000), 2)
    milliseconds = _padded(pc.subtract(within, pc.multiply(pc.divide(within, 1000), 1000)), 3)
    return pc.binary_join_element_wise(prefix, minutes, ":", seconds, ".", milliseconds, 'Z"', "")


# The hours a batch's timestamps may span for the table look-up below; wider batches (a flow that
# ended days after it started) take the arithmetic path of _iso_milliseconds.
_LOOKUP_HOURS = 4


# Built on first use, not at import: an Arrow array made from Python objects loads pyarrow's pandas
# shim, i.e. imports pandas (~0.6 s, ~40 MB), which the run's orchestrating process never needs.
@functools.cache
def _millisecond_texts() -> pa.Array:
    return pa.array([f'{ms:03d}Z"' for ms in range(1000)], pa.string())


@functools.lru_cache(maxsize=16)
def _second_texts(first_hour: int, hours: int) -> pa.Array:
    """'"YYYY-MM-DDTHH:MM:SS.' for every second of `hours` hours from hour number `first_hour` (epoch hours)."""
    first_second = first_hour * 3600
    seconds = pa.array(
        np.arange(first_second, first_second + hours * 3600, dtype=np.int64), pa.timestamp("s", tz="UTC")
    )
    return pc.strftime(seconds, format='"%Y-%m-%dT%H:%M:%S.')


def _iso_pieces(column: pa.Array) -> list[pa.Array] | None:
    """A timestamp column without nulls as two text pieces, "up to the second" and "milliseconds",
    each taken from a table (the seconds of the batch's few hours, cached; the 1,000 milliseconds):
    measured 31 ns a value against 150 for the arithmetic of _iso_milliseconds, and the pieces
    join the document line directly (bench/RESULTS.md, session 4). None when the column has nulls
    or spans too many hours."""
    if column.null_count or len(column) == 0:
        return None
    millis = np.asarray(pc.cast(column, pa.int64()))
    seconds = millis // 1000
    hours = seconds // 3600
    first, last = int(hours.min()), int(hours.max())
    if last - first >= _LOOKUP_HOURS:
        return None
    table = _second_texts(first, last - first + 1)
    return [pc.take(table, seconds - first * 3600), pc.take(_millisecond_texts(), millis - seconds * 1000)]


def _padded(numbers: pa.Array, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(numbers, pa.string()), width=width, padding="0")


def _json_value(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A column as JSON text: numbers bare, strings and timestamps quoted; null stays null."""
    if pa.types.is_timestamp(column.type):
        return _iso_milliseconds(column)
    if pa.types.is_string(column.type):
        return pc.binary_join_element_wise('"', column, '"', "")
    return pc.cast(column, pa.string())


def _same_nulls(a: pa.Array, b: pa.Array) -> bool:
    return a.null_count == b.null_count and pc.all(pc.equal(pc.is_null(a), pc.is_null(b))).as_py()


def _constant_text(column: pa.Array) -> str | None:
    """The JSON text of a column without nulls whose rows all hold one value, else None. Such a
    field (an exporter's sampling interval) is written as part of the row's literal text: no
    per-row cast, one argument fewer in the row's join. First against last is the cheap test."""
    if column[0].as_py() != column[-1].as_py() or not pc.all(pc.equal(column, column[0])).as_py():
        return None
    return _json_value(column.slice(0, 1))[0].as_py()


def encode_lines(batch: pa.RecordBatch, first_row: int, id_prefix: str, attempt: str) -> pa.StringArray:
    """One element per row: its `index` action line and its document line, both newline-ended.

    The document's `_id` is `id_prefix` + its row number in the hour, its `event.sequence` the row
    number, its `flows.attempt` the load attempt (both prefix and attempt are plain ASCII tokens).
    A null field is left out of its document (Elasticsearch treats a missing field and null
    alike): the flow schema has sparse columns (ICMP, VLAN, MAC, the Community ID), and writing
    `"netflow.icmp_type_ipv4":null` into every TCP flow's document would only cost bytes.
    Documents are identical whatever path a column takes (looked-up timestamps, a constant column
    written as text, the fields of sparse columns joined apart).
    """
    ids = pc.cast(pa.array(np.arange(first_row, first_row + batch.num_rows, dtype=np.int64)), pa.string())
    pieces: list = [
        f'{{"index":{{"_id":"{id_prefix}',
        ids,
        f'"}}}}\n{{"{ATTEMPT_FIELD}":"{attempt}","event.sequence":',
        ids,
    ]

    def add(*more: str | pa.Array) -> None:
        for piece in more:  # consecutive texts as one argument of the join
            if isinstance(piece, str) and isinstance(pieces[-1], str):
                pieces[-1] += piece
            else:
                pieces.append(piece)

    sparse: list = []  # consecutive columns null in the same rows (the two ports, ICMP type and code)
    for i, name in enumerate(batch.schema.names):
        column = batch.column(i)
        if column.null_count == len(column):
            continue
        if sparse and not (column.null_count and _same_nulls(sparse[1], column)):
            add(pc.fill_null(pc.binary_join_element_wise(*sparse, ""), ""))  # the fields, or nothing
            sparse = []
        if column.null_count:
            sparse += [f',"{name}":', _json_value(column)]
        elif pa.types.is_timestamp(column.type) and (looked_up := _iso_pieces(column)) is not None:
            add(f',"{name}":', *looked_up)
        elif (constant := _constant_text(column)) is not None:
            add(f',"{name}":{constant}')
        elif pa.types.is_string(column.type):
            add(f',"{name}":"', column, '"')  # quoted in the row's join, not in a join of its own
        else:
            add(f',"{name}":', _json_value(column))
    if sparse:
        add(pc.fill_null(pc.binary_join_element_wise(*sparse, ""), ""))
    add("}\n")
    return pc.binary_join_element_wise(*pieces, "")


def assemble_bodies(encoded: Iterable[tuple[int, pa.StringArray]], max_bytes: int, max_docs: int) -> Iterator[BulkBody]:
    """Bodies of at most `max_bytes` bytes and `max_docs` documents from consecutive encoded
    batches (first row, lines). A body may span batches, so small read batches (little memory)
    still make full-size requests."""
    pending: list[pa.Buffer] = []  # slices of encoded batches, copied once, by the join
    pending_bytes = pending_docs = pending_first = 0
    for first_row, lines in encoded:
        if len(lines) == 0:
            continue
        offset_type = np.int64 if pa.types.is_large_string(lines.type) else np.int32
        offsets = np.frombuffer(lines.buffers()[1], dtype=offset_type)[lines.offset : lines.offset + len(lines) + 1]
        offsets = offsets.astype(np.int64)  # sums with max_bytes below must not wrap
        data = lines.buffers()[2]
        longest = int(np.max(np.diff(offsets)))
        if longest > max_bytes:
            raise ConfigurationError(
                f"one document needs {longest} bytes, more than the bulk cap of {max_bytes} bytes: raise "
                "FLOWS_BULK_MAX_BYTES"
            )
        start = 0
        while start < len(lines):
            # the last row whose end still fits in the body, by binary search on the offsets
            end = int(np.searchsorted(offsets, offsets[start] + max_bytes - pending_bytes, side="right")) - 1
            end = min(end, start + max_docs - pending_docs, len(lines))
            if end > start:
                if not pending_docs:
                    pending_first = first_row + start
                pending.append(data[offsets[start] : offsets[end]])
                pending_bytes += int(offsets[end] - offsets[start])
                pending_docs += end - start
                start = end
            if start < len(lines):  # the next document does not fit: the body is full
                yield BulkBody(pending_first, pending_docs, b"".join(pending))
                pending, pending_bytes, pending_docs = [], 0, 0
    if pending_docs:
        yield BulkBody(pending_first, pending_docs, b"".join(pending))
