"""Room on the local disk for an hour's tables, checked before any of them is written.

A full disk in the middle of a write leaves an unexplained OSError (the tables themselves are
safe: they are renamed into place only when complete). So the free space under the storage root
is compared with an estimate of what the hour needs, and the step fails first, with the numbers.

The estimate: the previous hour's tables (raw, flow table, quarantines, summary), if they exist,
else what the source holds (its files' size, or ~60 bytes a synthetic flow for both tables);
times a margin of 2 (an hour can be twice the last, and a table is written to a temporary file
before it replaces an older one of the same hour), plus 64 MiB for the rest of the machine.

Tables on S3 (FLOWS_STORAGE_ROOT=s3://...) are not checked: an object store has no free space to
read, and a quota it enforces fails the write naming the key, with nothing published.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from flows_pipeline.errors import TerminalError
from flows_pipeline.tables.table_store import TableLocation, is_s3, size

MARGIN = 2
RESERVE_BYTES = 64 * 2**20


class DiskFullError(TerminalError):
    """Not enough free space under the storage root for the hour's tables."""


def hour_estimate(previous_tables: Iterable[TableLocation], source_bytes: int) -> int:
    """Bytes the hour's tables will likely take: the previous hour's, else the source's size."""
    previous = sum(size(path) or 0 for path in previous_tables)
    return MARGIN * (previous or source_bytes) + RESERVE_BYTES


def check_disk_room(root: TableLocation, needed: int, hour_key: str) -> None:
    """Raise DiskFullError (terminal) when the file system of `root` has less than `needed` bytes free;
    nothing for an S3 root."""
    if is_s3(root):
        return
    existing = Path(root)
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise DiskFullError(
            f"the tables of {hour_key} need about {needed / 2**20:,.0f} MiB under {root} (the previous hour's "
            f"tables or the source's size, x{MARGIN}, + {RESERVE_BYTES // 2**20} MiB), but only "
            f"{free / 2**20:,.0f} MiB are free: free space there, or lower FLOWS_RETENTION_DAYS and run "
            "flows_retention_job, then re-materialize the hour"
        )
