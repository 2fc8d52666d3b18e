"""Retention of the tables: the Parquet files of hours older than the retention window.

Tables live at <root>/<asset>/<YYYY-MM-DD>/<HH>.parquet (FlowStorage), so an hour's files are
found by their path alone; nothing is read. An hour is expired once its *end* is at least the
retention window before now (UTC wall-clock time).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flows_pipeline.hour import KEY_FORMAT


@dataclass
class TablesDeleted:
    hours: set[str] = field(default_factory=set)  # partition keys whose files were deleted
    files: int = 0
    bytes: int = 0


def _hour_files(root: Path, assets: Sequence[str]) -> Iterator[tuple[Path, datetime]]:
    for asset in assets:
        folder = root / asset
        if not folder.is_dir():
            continue
        for day in folder.iterdir():
            try:
                date = datetime.strptime(day.name, "%Y-%m-%d").replace(tzinfo=UTC)
            except ValueError:
                continue  # not a folder of this layout: never touched
            for path in day.glob("[0-2][0-9].parquet"):
                yield path, date + timedelta(hours=int(path.stem))


def delete_expired_tables(root: Path, assets: Sequence[str], cutoff: datetime) -> TablesDeleted:
    """Delete the tables of every hour whose end is at or before `cutoff`; empty day folders go too."""
    deleted = TablesDeleted()
    for path, start in list(_hour_files(root, assets)):
        if start + timedelta(hours=1) > cutoff:
            continue
        deleted.bytes += path.stat().st_size
        path.unlink()
        deleted.files += 1
        deleted.hours.add(start.strftime(KEY_FORMAT))
        if not any(path.parent.iterdir()):
            path.parent.rmdir()
    return deleted
