"""Finding the files that can hold an hour's flows, among a collector's rotated files.

Collectors name a file by when its flows *arrived* (nfcapd: `nfcapd.202110280305` holds what
arrived from 03:05 on), not by when the flows happened. A flow is seen first, then exported when
it ends or times out, so the flows first seen in an hour arrive during that hour or after it:
the hour's files are those named from its start up to its end plus a configured lag. Flows of
other hours found in them are sorted out later (and counted), never read twice into one hour.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flows_pipeline.errors import TerminalError, TransientError
from flows_pipeline.hour import Hour

# The stamp of every name nfcapd writes, anywhere in the name:
#   nfcapd.202110280305          minute rotation (nfcapd -t 60 and up)
#   nfcapd.20211028030530        sub-minute rotation adds the seconds (phaag/nfdump#347)
#   nfcapd.202110280305+0100     nfcapd -Z adds the collector's UTC offset (phaag/nfdump#5)
# nfcapd names a file in its own local time: a stamp without an offset is read as UTC, so the
# README asks collectors to run with TZ=UTC, or with -Z, whose offset is read here.
_NFCAPD_STAMP = re.compile(
    r"(?<!\d)(?P<minute>\d{12})(?P<seconds>\d{2})?(?:(?P<sign>[+-])(?P<hh>\d{2})(?P<mm>\d{2}))?(?!\d)"
)
# GoFlow2 and CSV files are named by minute, in UTC (goflow2-202110280300.jsonl): whatever
# follows the stamp is part of the name, never an offset or seconds
_MINUTE_STAMP = re.compile(r"(?<!\d)(?P<minute>\d{12})(?!\d)")
_MAX_OFFSET = timedelta(hours=14)  # the widest UTC offset in use (UTC+14:00, Kiribati)
_STAMP_FORMS = {True: "YYYYMMDDhhmm[ss][+-hhmm]", False: "YYYYMMDDhhmm"}
# rsync writes a copy as .<name>.<6 random characters>, then renames it to <name>
_RSYNC_TEMPORARY = re.compile(r"\.[A-Za-z0-9]{6}$")


class NoFlowFilesError(TerminalError):
    """No file holds the hour (or the source folder is missing): nothing to read."""


class UnplacedFileError(TerminalError):
    """A file named as the source's files are, whose name gives no time: it cannot be put in any hour."""


class FileStillWrittenError(TransientError):
    """A file the hour's window claims is still being written or copied: read later, it is complete."""


@dataclass(frozen=True)
class FlowFile:
    path: Path
    arrived_from: datetime


def _is_nfcapd(name: str) -> bool:
    return name.lstrip(".").startswith("nfcapd.")


def arrival_time(path: Path) -> datetime | None:
    """When the file's flows started arriving, in UTC, from its name; None if the name has no valid stamp.

    nfcapd names (nfcapd.*) may carry seconds and a UTC offset of at most 14 hours; other names
    carry the minute only, in UTC.
    """
    match = (_NFCAPD_STAMP if _is_nfcapd(path.name) else _MINUTE_STAMP).search(path.name)
    if not match:
        return None
    stamp = match.groupdict()
    try:
        moment = datetime.strptime(stamp["minute"] + (stamp.get("seconds") or "00"), "%Y%m%d%H%M%S")
    except ValueError:
        return None
    if not stamp.get("sign"):
        return moment.replace(tzinfo=UTC)
    offset = timedelta(hours=int(stamp["hh"]), minutes=int(stamp["mm"]))
    if int(stamp["mm"]) >= 60 or offset > _MAX_OFFSET:
        return None
    return (moment - offset if stamp["sign"] == "+" else moment + offset).replace(tzinfo=UTC)


def is_in_progress(path: Path) -> bool:
    """A file still being written: nfcapd.current.<pid>, or a hidden temporary file (rsync, scp)."""
    return ".current" in path.name or path.name.startswith(".")


def _is_format(name: str, suffixes: tuple[str, ...]) -> bool:
    """Named as the format's files are: nfcapd.* for nfcapd (suffixes ("",)), else by suffix.

    A hidden copy in progress counts as its finished name would: .<name>, or rsync's .<name>.XXXXXX.
    """
    names = (name.lstrip("."), _RSYNC_TEMPORARY.sub("", name.lstrip("."))) if name.startswith(".") else (name,)
    if suffixes == ("",):
        return any(n.startswith("nfcapd.") for n in names)
    return any(n.endswith(suffixes) for n in names)


def _source_files(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        raise NoFlowFilesError(f"flow source folder {root} does not exist; check FLOWS_SOURCE_ROOT")
    return (path for path in root.rglob("*") if path.is_file())


def flow_files(root: Path, suffixes: tuple[str, ...]) -> Iterator[FlowFile]:
    """Every finished file of the format under `root` (any sub-folder layout) whose name has a stamp.

    `suffixes` selects the format's files (".jsonl", ".csv"); for nfcapd it is ("",) and the
    name must start with "nfcapd.". Files named otherwise are told by `scan_folder`.
    """
    for path in _source_files(root):
        if is_in_progress(path) or not _is_format(path.name, suffixes):
            continue
        arrived = arrival_time(path)
        if arrived is not None:
            yield FlowFile(path, arrived)


def holds_hour(flow_file: FlowFile, hour: Hour, lag: timedelta) -> bool:
    """Whether the file can hold flows of `hour`: it was started in the hour or within `lag` after it."""
    return hour.start <= flow_file.arrived_from < hour.end + lag


@dataclass
class FolderScan:
    """The source folder as one hour sees it: every file is the hour's, another hour's, or told why not."""

    claimed: list[FlowFile] = field(default_factory=list)  # the hour's finished files, oldest first
    other_hours: int = 0  # finished files of the format that other hours' windows claim
    still_written: dict[str, str] = field(default_factory=dict)  # path -> why it may hold the hour
    in_progress: list[str] = field(default_factory=list)  # being written, but only later arrivals
    unplaced: dict[str, str] = field(default_factory=dict)  # format's name, no usable time -> reason
    other_names: list[str] = field(default_factory=list)  # not the format's files (.nfstat, README, ...)


def scan_folder(root: Path, hour: Hour, lag: timedelta, suffixes: tuple[str, ...]) -> FolderScan:
    """Sort every file under `root` for `hour`: nothing in the folder goes untold.

    A file being written (nfcapd.current.<pid>) holds what arrived since the latest finished file
    in its folder or below was rotated (nfcapd -S keeps the current file in the base folder and
    files the finished ones in dated sub-folders): that file's stamp plus the rotation interval,
    the smallest gap between those stamps (or, with fewer than two, between all stamps under
    `root`). It may hold the hour's flows if that is before the window's end, and always when
    no finished file tells. A hidden temporary file with a stamp (a copy in progress) may hold
    the hour when its stamp lies in the window.

    Raises NoFlowFilesError for a missing folder, FileStillWrittenError when a file being written
    is rotated while the folder is read (the next attempt sees it finished).
    """
    scan = FolderScan()
    finished: dict[Path, list[datetime]] = {}
    current: list[Path] = []
    window_end = hour.end + lag
    for path in _source_files(root):
        if not _is_format(path.name, suffixes):
            scan.other_names.append(str(path))
            continue
        arrived = arrival_time(path)
        if ".current" in path.name:
            current.append(path)
        elif path.name.startswith("."):
            if arrived is not None and hour.start <= arrived < window_end:
                scan.still_written[str(path)] = (
                    f"a copy in progress (hidden) of a file stamped {arrived:%Y-%m-%d %H:%M:%S} UTC"
                )
            else:
                scan.in_progress.append(str(path))
        elif arrived is None:
            form = _STAMP_FORMS[_is_nfcapd(path.name)]
            scan.unplaced[str(path)] = f"its name has no valid time stamp ({form}, an offset of at most +-1400)"
        else:
            finished.setdefault(path.parent, []).append(arrived)
            if holds_hour(FlowFile(path, arrived), hour, lag):
                scan.claimed.append(FlowFile(path, arrived))
            else:
                scan.other_hours += 1
    for path in current:
        since = _current_since(path.parent, finished)
        if since is not None and since >= window_end:
            scan.in_progress.append(str(path))
        elif _last_written(path) < hour.start:
            scan.in_progress.append(str(path))  # last written before the hour: none of its flows
        else:
            start = f"from about {since:%H:%M:%S} UTC" if since else "since a time its folder does not tell"
            scan.still_written[str(path)] = f"still being written by the collector, holding what arrived {start}"
    scan.claimed.sort(key=lambda f: (f.arrived_from, str(f.path)))
    return scan


def _current_since(folder: Path, finished: dict[Path, list[datetime]]) -> datetime | None:
    """When the file being written in `folder` started: its latest finished file's stamp plus the interval."""
    below = sorted({t for parent, stamps in finished.items() if parent.is_relative_to(folder) for t in stamps})
    if not below:
        return None
    everywhere = below if len(below) > 1 else sorted({t for stamps in finished.values() for t in stamps})
    gaps = [b - a for a, b in itertools.pairwise(everywhere)]
    return below[-1] + min(gaps) if gaps else None


def _last_written(path: Path) -> datetime:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except FileNotFoundError:
        raise FileStillWrittenError(
            f"{path} was rotated while its folder was read; the next attempt reads the finished file"
        ) from None


def files_for_hour(root: Path, hour: Hour, lag: timedelta, suffixes: tuple[str, ...]) -> list[FlowFile]:
    """The finished files under `root` that can hold `hour`'s flows, oldest first (see flow_files)."""
    return scan_folder(root, hour, lag, suffixes).claimed
