"""Progress of a long chunk: rows sent, documents/s and time left, reported every few seconds."""

from flows_pipeline.es.bulk_encoding import BulkBody
from flows_pipeline.es.chunk_loading import ChunkProgress, ChunkTask, _reporting
from flows_pipeline.es.chunk_plan import ChunkSpec
from flows_pipeline.es.index_lifecycle import LoadAttempt

TASK = ChunkTask(LoadAttempt("a", "b", "2021.10.28-03-abcdef12-1", "abcdef12-2803-"), ChunkSpec("t", 0, 3, 0, 3000))


def test_every_body_is_passed_on_and_progress_is_reported_as_rows_go_out():
    reports: list[ChunkProgress] = []
    bodies = [BulkBody(i * 1000, 1000, b"") for i in range(3)]
    assert list(_reporting(iter(bodies), TASK, reports.append, every_s=0.0)) == bodies
    assert [r.rows_sent for r in reports] == [1000, 2000, 3000]
    assert all(r.rows == 3000 and r.chunk_key == TASK.chunk.key for r in reports)


def test_the_report_reads_as_rows_rate_and_time_left():
    text = str(ChunkProgress("rows_000000000_000003000", rows_sent=1000, rows=3000, seconds=2.0))
    assert text == "rows_000000000_000003000: 1,000 of 3,000 rows sent (33%), 500 documents/s, ~4 s left"


def test_reports_are_throttled():
    reports: list[ChunkProgress] = []
    list(_reporting(iter([BulkBody(0, 1, b"")] * 50), TASK, reports.append, every_s=3600.0))
    assert reports == []
