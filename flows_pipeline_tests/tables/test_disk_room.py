"""The free-space check before an hour's tables are written."""

import shutil

import pytest

from flows_pipeline.tables.disk_room import MARGIN, RESERVE_BYTES, DiskFullError, check_disk_room, hour_estimate


def test_a_disk_without_room_for_the_hour_fails_first_with_the_numbers(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(DiskFullError, match=r"need about .* MiB under .*tables.*MiB are free.*FLOWS_RETENTION_DAYS"):
        check_disk_room(tmp_path / "tables" / "not-yet", free + 2**30, "2021-10-28-03:00")
    check_disk_room(tmp_path / "tables", 1, "2021-10-28-03:00")  # room enough: nothing raised


def test_the_estimate_is_the_previous_hours_tables_else_the_sources_size_with_a_margin(tmp_path):
    previous = [tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "missing.parquet"]
    assert hour_estimate(previous, source_bytes=1000) == MARGIN * 1000 + RESERVE_BYTES
    previous[0].write_bytes(b"x" * 300)
    previous[1].write_bytes(b"x" * 200)
    assert hour_estimate(previous, source_bytes=1000) == MARGIN * 500 + RESERVE_BYTES
