"""The set of source files an hour was loaded from, to tell later whether it changed.

A file that arrives after its hour was loaded (a second exporter's 06:30 file, a collector that
caught up after an outage), or one replaced or grown since, means the hour's index no longer
holds what the source holds. raw_flows records the hour's file set (name, size, mtime) and its
digest when it reads the hour; the catch-up sensor (orchestration/catch_up.py) compares it with
what the folder holds now and re-requests the hour when they differ.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from flows_pipeline.hour import Hour
from flows_pipeline.sources.rotated_files import NoFlowFilesError, flow_files, holds_hour
from flows_pipeline.sources.source_reader import FILE_FORMATS, SourceSettings


@dataclass(frozen=True, order=True)
class SourceFile:
    """One file of an hour: its path under the source folder, size in bytes, mtime in ns since the epoch."""

    name: str
    bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class FileSet:
    files: tuple[SourceFile, ...]  # sorted by name

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the sorted (name, bytes, mtime_ns) of every file: equal sets, equal digests."""
        text = json.dumps([[f.name, f.bytes, f.mtime_ns] for f in self.files])
        return hashlib.sha256(text.encode()).hexdigest()

    def as_json(self) -> list[dict]:
        return [asdict(f) for f in self.files]


def file_sets_by_hour(settings: SourceSettings, hours: Iterable[Hour]) -> dict[str, FileSet] | None:
    """Hour key -> the files that can hold the hour's flows now (rotated_files.holds_hour), from one
    walk of the source folder; a missing folder gives empty sets. None for a source without files
    (synthetic). Files removed or changed during the walk are left out (they change the set again)."""
    if settings.kind not in FILE_FORMATS or settings.root is None:
        return None
    hours = list(hours)
    found: dict[str, list[SourceFile]] = {hour.key: [] for hour in hours}
    suffixes, _ = FILE_FORMATS[settings.kind]
    try:
        for flow_file in flow_files(settings.root, suffixes):
            matching = [hour for hour in hours if holds_hour(flow_file, hour, settings.lag)]
            if not matching:
                continue
            try:
                stat = flow_file.path.stat()
            except OSError:
                continue
            entry = SourceFile(_name(flow_file.path, settings.root), stat.st_size, stat.st_mtime_ns)
            for hour in matching:
                found[hour.key].append(entry)
    except NoFlowFilesError:
        pass  # no folder (yet): every hour has no files
    return {key: FileSet(tuple(sorted(files))) for key, files in found.items()}


def hour_file_set(settings: SourceSettings, hour: Hour) -> FileSet | None:
    """The files that can hold `hour`'s flows now; None for a source without files."""
    sets = file_sets_by_hour(settings, [hour])
    return None if sets is None else sets[hour.key]


def _name(path: Path, root: Path) -> str:
    return str(path.relative_to(root))
