"""Finding the files that can hold an hour's flows, among a collector's rotated files.

Collectors name a file by when its flows *arrived* (nfcapd: `nfcapd.202110280305` holds what
arrived from 03:05 on), not by when the flows happened. A flow is seen first, then exported when
it ends or times out, so the flows first seen in an hour arrive during that hour or after it:
the hour's files are those named from its start up to its end plus a configured lag. Flows of
other hours found in them are sorted out later (and counted), never read twice into one hour.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flows_pipeline.errors import TerminalError
from flows_pipeline.hour import Hour

# YYYYMMDDhhmm anywhere in the name: nfcapd.202110280305, goflow2-202110280300.jsonl, ...
_STAMP = re.compile(r"(?<!\d)(\d{12})(?!\d)")


class NoFlowFilesError(TerminalError):
    """No file holds the hour (or the source folder is missing): nothing to read."""


@dataclass(frozen=True)
class FlowFile:
    path: Path
    arrived_from: datetime


def arrival_time(path: Path) -> datetime | None:
    match = _STAMP.search(path.name)
    if not match:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None


def is_in_progress(path: Path) -> bool:
    """A file still being written: nfcapd.current.<pid>, or a hidden temporary file."""
    return ".current" in path.name or path.name.startswith(".")


def flow_files(root: Path, suffixes: tuple[str, ...]) -> Iterator[FlowFile]:
    """Every finished file of the format under `root` (any sub-folder layout) whose name has a stamp.

    `suffixes` selects the format's files (".jsonl", ".csv"); for nfcapd it is ("",) and the
    name must start with "nfcapd.".
    """
    if not root.is_dir():
        raise NoFlowFilesError(f"flow source folder {root} does not exist; check FLOWS_SOURCE_ROOT")
    for path in root.rglob("*"):
        if not path.is_file() or is_in_progress(path):
            continue
        if suffixes == ("",) and not path.name.startswith("nfcapd."):
            continue
        if suffixes != ("",) and not path.name.endswith(suffixes):
            continue
        arrived = arrival_time(path)
        if arrived is not None:
            yield FlowFile(path, arrived)


def holds_hour(flow_file: FlowFile, hour: Hour, lag: timedelta) -> bool:
    """Whether the file can hold flows of `hour`: it was started in the hour or within `lag` after it."""
    return hour.start <= flow_file.arrived_from < hour.end + lag


def files_for_hour(root: Path, hour: Hour, lag: timedelta, suffixes: tuple[str, ...]) -> list[FlowFile]:
    """The finished files under `root` that can hold `hour`'s flows, oldest first (see flow_files)."""
    found = [f for f in flow_files(root, suffixes) if holds_hour(f, hour, lag)]
    return sorted(found, key=lambda f: (f.arrived_from, str(f.path)))
