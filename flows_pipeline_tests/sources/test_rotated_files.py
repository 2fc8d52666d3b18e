"""Which files of a collector's folder an hour claims, from their names alone (no Elasticsearch)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows_pipeline.hour import hour_of
from flows_pipeline.sources import rotated_files
from flows_pipeline.sources.rotated_files import FileStillWrittenError, arrival_time, scan_folder

THREE = hour_of("2021-10-28-03:00")
LAG = timedelta(minutes=15)
NFCAPD, JSONL = ("",), (".jsonl",)


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "arrived"),
    [
        ("nfcapd.202110280305", "2021-10-28 03:05:00"),
        ("nfcapd.20211028030530", "2021-10-28 03:05:30"),
        ("nfcapd.202110280305+0100", "2021-10-28 02:05:00"),
        ("nfcapd.202110280305-0530", "2021-10-28 08:35:00"),
        ("nfcapd.202110281305+1400", "2021-10-27 23:05:00"),
        # GoFlow2 and CSV names carry the minute only: what follows it is part of the name
        ("goflow2-202110280300-0400.jsonl", "2021-10-28 03:00:00"),
        ("flows-202110280300.csv", "2021-10-28 03:00:00"),
        ("nfcapd.202110280305+1500", None),  # no offset is wider than 14 hours
        ("nfcapd.202110280305+0160", None),
        ("nfcapd.202113280305", None),
        ("flows-20211028030011.csv", None),  # seconds are nfcapd's only
    ],
)
def test_a_name_gives_the_time_its_flows_started_arriving(name, arrived):
    assert arrival_time(Path(name)) == (at(arrived) if arrived else None)


def write(path: Path, mtime: datetime | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    if mtime is not None:
        os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    return path


def nfcapd_day(root: Path, until: str) -> None:
    """nfcapd -S 1 -t 300: finished files in YYYY/MM/DD, from 02:00 to `until` (hhmm)."""
    moment = at("2021-10-28 02:00:00")
    while f"{moment:%H%M}" <= until:
        write(root / f"{moment:%Y/%m/%d}" / f"nfcapd.{moment:%Y%m%d%H%M}")
        moment += timedelta(minutes=5)


def test_in_the_dated_layout_the_current_file_in_the_base_folder_starts_after_the_latest_finished_one(tmp_path):
    nfcapd_day(tmp_path, "0425")  # the collector is at 04:30, past 03:00's window
    current = write(tmp_path / "nfcapd.current.4242")
    scan = scan_folder(tmp_path, THREE, LAG, NFCAPD)
    assert scan.still_written == {} and scan.in_progress == [str(current)]
    assert len(scan.claimed) == 15 and scan.claimed[0].arrived_from == THREE.start

    for late in tmp_path.rglob("nfcapd.2*"):  # the collector is at 03:10
        if late.name > "nfcapd.202110280305":
            late.unlink()
    scan = scan_folder(tmp_path, THREE, LAG, NFCAPD)
    assert scan.still_written == {str(current): "still being written by the collector, holding what arrived from "
                                  "about 03:10:00 UTC"}  # fmt: skip


def test_a_current_file_last_written_before_the_hour_holds_none_of_it(tmp_path):
    write(tmp_path / "nfcapd.202110280255")
    current = write(tmp_path / "nfcapd.current.1", mtime=at("2021-10-28 02:58:00"))
    assert scan_folder(tmp_path, THREE, LAG, NFCAPD).in_progress == [str(current)]
    os.utime(current)  # written now: with one finished file its start cannot be told
    assert (
        "since a time its folder does not tell" in scan_folder(tmp_path, THREE, LAG, NFCAPD).still_written[str(current)]
    )


def test_a_current_file_rotated_while_the_folder_is_read_is_a_transient_failure(tmp_path, monkeypatch):
    gone = tmp_path / "nfcapd.current.1"  # listed by the walk, renamed by nfcapd before it is looked at
    monkeypatch.setattr(rotated_files, "_source_files", lambda root: iter([gone]))
    with pytest.raises(FileStillWrittenError, match=f"{gone} was rotated while its folder was read"):
        scan_folder(tmp_path, THREE, LAG, NFCAPD)


@pytest.mark.parametrize(
    ("name", "suffixes"),
    [
        (".goflow2-202110280305.jsonl.Ab12Cd", JSONL),  # rsync's temporary name
        (".goflow2-202110280305.jsonl", JSONL),
        (".nfcapd.202110280305.x9Y8z7", NFCAPD),
    ],
)
def test_a_hidden_copy_in_progress_within_the_window_holds_the_hour_back(tmp_path, name, suffixes):
    copy = write(tmp_path / name)
    scan = scan_folder(tmp_path, THREE, LAG, suffixes)
    assert scan.still_written == {str(copy): "a copy in progress (hidden) of a file stamped 2021-10-28 03:05:00 UTC"}
    assert scan.other_names == []


def test_a_hidden_copy_of_another_hour_and_a_foreign_file_are_told_not_read(tmp_path):
    copy = write(tmp_path / ".goflow2-202110281105.jsonl.Ab12Cd")
    readme = write(tmp_path / "README.txt")
    scan = scan_folder(tmp_path, THREE, LAG, JSONL)
    assert scan.in_progress == [str(copy)] and scan.other_names == [str(readme)] and not scan.claimed
