"""Retention of the tables: the Parquet files of hours older than the retention window.

Tables live at <root>/<asset>/<YYYY-MM-DD>/<HH>.parquet (FlowStorage), locally or on S3, so an
hour's files are found by their path alone: one listing of the asset's folder (its days), one per
day; nothing is read. An hour's file goes with its recorded digest (`<HH>.parquet.sha256`), and a
day's folder once nothing is left in it. An hour is expired once its *end* is at least the
retention window before now (UTC wall-clock time).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow.fs as pafs

from flows_pipeline.hour import KEY_FORMAT
from flows_pipeline.tables import table_store
from flows_pipeline.tables.table_store import TableLocation, digest_location

_HOUR_FILE = re.compile(r"[0-2][0-9]\.parquet")


@dataclass
class TablesDeleted:
    hours: set[str] = field(default_factory=set)  # partition keys whose files were deleted
    files: int = 0
    bytes: int = 0


def _base_name(info: pafs.FileInfo) -> str:
    return info.path.rstrip("/").rsplit("/", 1)[-1]


def _days(root: TableLocation, asset: str) -> Iterator[tuple[TableLocation, datetime]]:
    for entry in table_store.listing(table_store.join(root, asset)):
        if entry.type != pafs.FileType.Directory:
            continue
        try:
            date = datetime.strptime(_base_name(entry), "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            continue  # not a folder of this layout: never touched
        yield table_store.join(root, asset, _base_name(entry)), date


def delete_expired_tables(root: TableLocation, assets: Sequence[str], cutoff: datetime) -> TablesDeleted:
    """Delete the tables of every hour whose end is at or before `cutoff`; empty day folders go too.

    Raises the storage errors of table_store (S3) naming the object that could not be listed or deleted.
    """
    deleted = TablesDeleted()
    for asset in assets:
        for day, date in list(_days(root, asset)):
            if date >= cutoff:
                continue  # no hour of the day has ended by the cutoff: not even listed
            removed = 0
            for entry in table_store.listing(day):
                name = _base_name(entry)
                start = date + timedelta(hours=int(name[:2])) if _HOUR_FILE.fullmatch(name) else None
                if entry.type != pafs.FileType.File or start is None or start + timedelta(hours=1) > cutoff:
                    continue
                table = table_store.join(day, name)
                table_store.delete(table)
                table_store.delete(digest_location(table))
                deleted.bytes += entry.size
                deleted.files += 1
                deleted.hours.add(start.strftime(KEY_FORMAT))
                removed += 1
            if removed:
                table_store.remove_folder_if_empty(day)
    return deleted
