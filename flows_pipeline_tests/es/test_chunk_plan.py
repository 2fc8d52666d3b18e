import pickle

import pyarrow as pa
import pytest

from flows_pipeline.es.chunk_plan import ChunkSpec, plan_chunks
from flows_pipeline.tables.row_groups import RowGroupWriter

SCHEMA = pa.schema([("n", pa.int64())])


def write_table(path, rows: int, row_group_rows: int):
    with RowGroupWriter(path, SCHEMA, row_group_rows) as writer:
        for start in range(0, rows, 700):  # batches that do not line up with row groups
            writer.write(pa.record_batch([pa.array(range(start, min(rows, start + 700)))], schema=SCHEMA))
    return path


@pytest.mark.parametrize(
    ("rows", "row_group_rows", "parallel", "most_groups"),
    [
        (0, 100, 2, 2),
        (1, 100, 2, 2),
        (100, 100, 4, 2),
        (99, 100, 1, 1),
        (1000, 100, 4, 32),  # 10 groups, 4 steps: 3+3+2+2
        (1001, 100, 2, 3),  # 11 groups over 2 steps, at most 3 each: two waves of 2
        (5000, 128, 3, 4),  # 40 groups: 4 waves of 3 chunks
        (5000, 128, 1, 1),
    ],
)
def test_plan_covers_every_row_exactly_once(tmp_path, rows, row_group_rows, parallel, most_groups):
    chunks = plan_chunks(write_table(tmp_path / "t.parquet", rows, row_group_rows), parallel, most_groups)

    covered = [row for c in chunks for row in range(c.first_row, c.first_row + c.rows)]
    assert covered == list(range(rows))
    groups = [g for c in chunks for g in c.row_groups]
    assert groups == list(range(-(-rows // row_group_rows)))
    assert len({c.key for c in chunks}) == len(chunks)
    sizes = [c.row_group_count for c in chunks]
    assert max(sizes) <= most_groups
    assert max(sizes) - min(sizes) <= 1  # near-equal: steps that run together finish together


@pytest.mark.parametrize(
    ("row_groups", "parallel", "most_groups", "expected_chunks"),
    [
        (16, 4, 32, 4),  # a 1,000,000-flow hour: one chunk per step that runs at once
        (120, 4, 32, 4),  # the incident's hour at max_concurrent 4: 4 chunks of 30, not 30 of 4
        (120, 2, 32, 4),  # 2 steps at once, 32 at most: two waves of 2
        (300, 4, 32, 12),  # beyond the cap: a multiple of the steps, so no wave runs half empty
        (3, 4, 32, 3),  # fewer row groups than steps: one each
    ],
)
def test_plan_has_one_chunk_per_parallel_step_until_the_cap(
    tmp_path, row_groups, parallel, most_groups, expected_chunks
):
    table = write_table(tmp_path / "t.parquet", row_groups * 10, 10)
    assert len(plan_chunks(table, parallel, most_groups)) == expected_chunks


def test_row_groups_have_the_fixed_size(tmp_path):
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(write_table(tmp_path / "t.parquet", 1050, 100)).metadata
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert sizes == [100] * 10 + [50]


def test_empty_table_still_gets_one_empty_chunk(tmp_path):
    chunks = plan_chunks(write_table(tmp_path / "t.parquet", 0, 100), 4, 32)
    assert [(c.rows, c.row_group_count) for c in chunks] == [(0, 0)]


def test_descriptor_size_does_not_depend_on_rows():
    small = ChunkSpec("/data/flow_table/2021-10-28/03.parquet", 0, 4, 0, 10)
    large = ChunkSpec("/data/flow_table/2021-10-28/03.parquet", 0, 4, 7_000_000, 850_484)
    assert abs(len(pickle.dumps(small)) - len(pickle.dumps(large))) <= 8
    assert len(pickle.dumps(large)) < 512
