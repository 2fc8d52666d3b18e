"""An index_chunk step needs memory for one batch, not one hour: proved under a hard limit."""

import dataclasses
import json
import os
import subprocess
import sys

from flows_pipeline.es.chunk_loading import BulkLimits, ChunkTask, chunk_bodies
from flows_pipeline.es.chunk_plan import plan_chunks
from flows_pipeline.es.index_lifecycle import LoadAttempt, prepare_load
from flows_pipeline.hour import hour_of
from flows_pipeline.sources.source_reader import SourceReport, read_hour
from flows_pipeline.tables.hour_tables import build_flow_table, write_raw_flows
from flows_pipeline_tests.support import ES_URL, PROJECT, index_layout, synthetic_source

HOUR = hour_of("2021-10-28-11:00")
ROWS = 600_000
HEADROOM = 256 * 2**20  # address space the child may add to what its imports use


def run_limited(mode: str, table, attempt: LoadAttempt) -> subprocess.CompletedProcess:
    # one malloc arena per thread and no Arrow-side reservation: the limit then measures use
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "ARROW_DEFAULT_MEMORY_POOL": "system"}
    attempt_json = json.dumps(dataclasses.asdict(attempt))
    command = [
        sys.executable,
        "-m",
        "flows_pipeline_tests.memory_limited_chunk",
        mode,
        str(table),
        ES_URL,
        attempt_json,
    ]
    return subprocess.run([*command, str(HEADROOM)], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)


def test_index_chunk_streams_an_hour_larger_than_its_memory_limit(tmp_path, es_client, index_prefix):
    raw, rejected, table, quarantine = (tmp_path / f"{name}.parquet" for name in ("raw", "rq", "table", "q"))
    write_raw_flows(read_hour(synthetic_source(ROWS), HOUR, SourceReport(), 65_536), raw, rejected, 65_536)
    build_flow_table(raw, rejected, HOUR, table, quarantine, 65_536)
    limits = BulkLimits(max_bytes=5 * 2**20, max_docs=10_000, max_in_flight=2)
    attempt = prepare_load(es_client, index_layout(index_prefix), ES_URL, HOUR, "memlimit", now_ms=1)
    task = ChunkTask(attempt, plan_chunks(table, 1, 10**6)[0])
    hour_body_bytes = sum(len(body.payload) for body in chunk_bodies(task, limits))
    assert hour_body_bytes > HEADROOM  # the hour's bulk body alone would not fit

    whole = run_limited("whole-body", table, attempt)
    assert whole.returncode != 0 and "MemoryError" in whole.stderr  # the incident's way fails here

    streamed = run_limited("stream", table, attempt)
    assert streamed.returncode == 0, streamed.stderr[-2000:]
    assert streamed.stdout.strip() == f"indexed {ROWS}"
    es_client.indices.refresh(index=attempt.bucket)
    assert es_client.count(index=attempt.alias)["count"] == ROWS


READ_EVERY_ROW_GROUP = """
import sys
import pyarrow as pa
from flows_pipeline.tables.row_groups import read_batches
groups = int(sys.argv[2])
rows = sum(batch.num_rows for batch in read_batches(sys.argv[1], batch_rows=4096, row_groups=list(range(groups))))
print(rows, pa.default_memory_pool().max_memory())
"""


def test_reading_a_long_chunk_holds_one_row_group_at_a_time(tmp_path):
    """Arrow's reader, given many row groups at once, pre-buffers all their pages: a chunk
    step's memory then grew with its chunk's length (measured: 81 MB for 30 row groups)."""
    raw, rejected, table, quarantine = (tmp_path / f"{name}.parquet" for name in ("raw", "rq", "table", "q"))
    write_raw_flows(read_hour(synthetic_source(300_000), HOUR, SourceReport(), 10_000), raw, rejected, 10_000)
    build_flow_table(raw, rejected, HOUR, table, quarantine, 10_000)  # 30 row groups of ~0.4 MB

    def arrow_peak(groups: int) -> int:
        command = [sys.executable, "-c", READ_EVERY_ROW_GROUP, str(table), str(groups)]
        out = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=120, check=True).stdout
        rows, peak = map(int, out.split())
        assert rows == groups * 10_000
        return peak

    assert arrow_peak(30) < 1.5 * arrow_peak(3)
