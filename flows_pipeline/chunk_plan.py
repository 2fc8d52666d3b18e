"""The index plan: which rows of an hour's flow table each `index_chunk` step loads.

A chunk is a descriptor, never rows: the table file, a range of its row groups, and where those
rows start in the hour. It is built from the Parquet footer alone, so planning costs the same
for ten rows as for ten million, and each step opens only its own row groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq


@dataclass(frozen=True)
class ChunkSpec:
    table_path: str
    first_row_group: int
    row_group_count: int
    first_row: int  # the hour's row number of the chunk's first row; document ids derive from it
    rows: int

    @property
    def row_groups(self) -> list[int]:
        return list(range(self.first_row_group, self.first_row_group + self.row_group_count))

    @property
    def key(self) -> str:
        """A stable, Dagster-safe mapping key: rows 0-1048575 -> rows_0000000_1048575."""
        return f"rows_{self.first_row:09d}_{self.first_row + self.rows:09d}"


def plan_chunks(table_path: Path, row_groups_per_chunk: int) -> list[ChunkSpec]:
    """Consecutive row groups, `row_groups_per_chunk` at a time, covering every row once.

    An empty table still gets one (empty) chunk, so the index graph runs the same way for
    an hour without flows and its finalize step verifies an empty index.
    """
    if row_groups_per_chunk < 1:
        raise ValueError(f"row_groups_per_chunk must be at least 1, got {row_groups_per_chunk}")
    metadata = pq.ParquetFile(table_path).metadata
    group_rows = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    chunks = []
    first_row = 0
    for first in range(0, len(group_rows), row_groups_per_chunk):
        count = min(row_groups_per_chunk, len(group_rows) - first)
        rows = sum(group_rows[first : first + count])
        chunks.append(ChunkSpec(str(table_path), first, count, first_row, rows))
        first_row += rows
    return chunks or [ChunkSpec(str(table_path), 0, 0, 0, 0)]
