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

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # %S of a millisecond timestamp keeps the .fff


@dataclass(frozen=True)
class BulkBody:
    first_row: int  # hour row number of the body's first document
    docs: int
    payload: bytes


def _json_value(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A column as JSON text: numbers bare, strings and timestamps quoted, null as null."""
    if pa.types.is_timestamp(column.type):
        text = pc.binary_join_element_wise('"', pc.strftime(column, format=_TIMESTAMP_FORMAT), '"', "")
    elif pa.types.is_string(column.type):
        text = pc.binary_join_element_wise('"', column, '"', "")
    else:
        text = pc.cast(column, pa.string())
    return pc.fill_null(text, "null")


def encode_lines(batch: pa.RecordBatch, first_row: int) -> pa.LargeStringArray:
    """One element per row: its `index` action line and its document line, both newline-ended."""
    ids = pc.cast(pa.array(np.arange(first_row, first_row + batch.num_rows, dtype=np.int64)), pa.string())
    pieces: list = ['{"index":{"_id":"', ids, '"}}\n{"event.sequence":', ids]
    for i, name in enumerate(batch.schema.names):
        pieces.append(f',"{name}":')
        pieces.append(_json_value(batch.column(i)))
    pieces.append("}\n")
    joined = pc.binary_join_element_wise(*pieces, "")
    return pc.cast(joined, pa.large_string())


def split_bodies(lines: pa.LargeStringArray, first_row: int, max_bytes: int, max_docs: int) -> Iterator[BulkBody]:
    """Consecutive rows grouped into bodies of at most `max_bytes` bytes and `max_docs` documents."""
    if len(lines) == 0:
        return
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    data = lines.buffers()[2]
    longest = int(np.max(np.diff(offsets)))
    if longest > max_bytes:
        raise ValueError(f"one document needs {longest} bytes, more than the bulk cap of {max_bytes} bytes")
    start = 0
    while start < len(lines):
        # the last row whose end still fits in this body, by binary search on the offsets
        limit = offsets[start] + max_bytes
        end = int(np.searchsorted(offsets, limit, side="right")) - 1
        end = min(end, start + max_docs, len(lines))
        yield BulkBody(first_row + start, end - start, data[offsets[start] : offsets[end]].to_pybytes())
        start = end
