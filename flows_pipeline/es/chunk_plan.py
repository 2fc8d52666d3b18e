"""The index plan: which rows of an hour's flow table each `index_chunk` step loads.

A chunk is a descriptor, never rows: the table file, a range of its row groups, and where those
rows start in the hour. It is built from the Parquet footer alone, so planning costs the same
for ten rows as for ten million, and each step opens only its own row groups.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows_pipeline.errors import ConfigurationError
from flows_pipeline.tables.row_groups import parquet_metadata, verify_digest
from flows_pipeline.tables.table_store import TableLocation


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


def plan_chunks(table_path: TableLocation, parallel_steps: int, max_row_groups_per_chunk: int) -> list[ChunkSpec]:
    """Consecutive, near-equal ranges of row groups covering every row once.

    As many chunks as the run indexes at once (`parallel_steps`), so every step works and they
    finish together; more, in multiples of `parallel_steps` (or one per row group, if fewer),
    only when a chunk would exceed `max_row_groups_per_chunk`, which bounds the work a retried
    step redoes. A step's memory does not depend on its chunk's length (it streams), but every
    step is a process start and Dagster's step set-up: ~0.25 CPU-s each (a step's CPU less the
    same rows indexed in one process), taken from the cores Elasticsearch needs.

    An empty table still gets one (empty) chunk, so the index graph runs the same way for
    an hour without flows and its finalize step verifies an empty index.
    """
    if parallel_steps < 1 or max_row_groups_per_chunk < 1:
        raise ConfigurationError(
            f"parallel_steps and max_row_groups_per_chunk must be at least 1, "
            f"got {parallel_steps} and {max_row_groups_per_chunk}"
        )
    verify_digest(table_path)  # nothing is loaded from a table whose bytes changed since it was written
    metadata = parquet_metadata(table_path)
    group_rows = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    if not group_rows:
        return [ChunkSpec(str(table_path), 0, 0, 0, 0)]
    waves = -(-len(group_rows) // (parallel_steps * max_row_groups_per_chunk))
    count = min(len(group_rows), parallel_steps * waves)
    chunks = []
    first_group = first_row = 0
    for i in range(count):
        groups = len(group_rows) // count + (1 if i < len(group_rows) % count else 0)
        rows = sum(group_rows[first_group : first_group + groups])
        chunks.append(ChunkSpec(str(table_path), first_group, groups, first_row, rows))
        first_group += groups
        first_row += rows
    return chunks
