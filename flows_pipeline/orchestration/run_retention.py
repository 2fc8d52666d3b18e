"""Dagster's own data kept bounded: the runs of expired hours, and their event logs, are deleted.

Every run leaves its record, its event log (with SQLite: one database file per run) and, under
the multiprocess executor, a folder of step outputs: ~440 KB a 100k-row hour, ~1 GB a season.
The retention job deletes, with `DagsterInstance.delete_run` (run and event log, any storage):

- every finished run of an hour that ended before the cutoff (FLOWS_RETENTION_DAYS), whenever the
  run was made (a backfill of last year's hours too);
- every finished run without an hour (the retention job's own, a `dagster job execute`) created
  before the cutoff.

The materializations of the deleted runs go with them, so Dagster shows the expired hours as
missing: no partition wipe is needed (Dagster OSS's SQL storages cannot wipe partitions) and no
kept hour is recorded again. The kept hours keep their runs, checks and failures: a failed hour
stays failed. The assets' cached partition status is dropped so the UI recounts it.

With SQLite, the emptied per-run database file and the run's step-output folder are removed too
(Dagster leaves them): with Postgres there are none. With tables on S3 the run's step values are
objects under <root>/step_values/<run id>/ (orchestration/step_values.py): deleted with the run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dagster import AssetKey, DagsterInstance, RunRecord, RunsFilter
from dagster._core.storage.dagster_run import FINISHED_STATUSES
from dagster._core.storage.tags import PARTITION_NAME_TAG

from flows_pipeline.hour import Hour, parse_hour_key
from flows_pipeline.orchestration.step_values import run_values
from flows_pipeline.tables import table_store
from flows_pipeline.tables.table_store import TableLocation

PAGE = 500


@dataclass(frozen=True)
class DeletedRuns:
    runs: int
    hours: int  # hours whose runs were deleted
    files: int  # SQLite run databases and step-output folders (local, or on S3) removed
    bytes_freed: int


def expired_runs(instance: DagsterInstance, cutoff: datetime, keep: str | None = None) -> Iterator[RunRecord]:
    """Finished runs of hours that ended before `cutoff` (aware), or without an hour and created before it."""
    cursor = None
    while True:
        page = instance.get_run_records(RunsFilter(statuses=list(FINISHED_STATUSES)), limit=PAGE, cursor=cursor)
        for record in page:
            if record.dagster_run.run_id != keep and _expired(record, cutoff):
                yield record
        if len(page) < PAGE:
            return
        cursor = page[-1].dagster_run.run_id


def _expired(record: RunRecord, cutoff: datetime) -> bool:
    key = record.dagster_run.tags.get(PARTITION_NAME_TAG)
    if key is None:
        return record.create_timestamp < cutoff
    try:
        return Hour(parse_hour_key(key)).end <= cutoff
    except ValueError:
        return record.create_timestamp < cutoff  # not an hour key: judged by its age


def delete_expired_runs(
    instance: DagsterInstance,
    cutoff: datetime,
    assets: Sequence[AssetKey],
    keep: str | None = None,
    storage_root: TableLocation | None = None,
) -> DeletedRuns:
    """Delete the expired runs (see expired_runs) and what they left; `keep` is the caller's own run.
    An S3 `storage_root` (FLOWS_STORAGE_ROOT) also holds their step values: deleted too."""
    doomed = list(expired_runs(instance, cutoff, keep))  # listed first: deleting while paging would skip
    files = freed = 0
    values_on_s3 = storage_root is not None and table_store.is_s3(storage_root)
    for record in doomed:
        run_id = record.dagster_run.run_id
        leftovers = _run_files(instance, run_id)
        # the values first: a storage failure then leaves the run to the next retention, not its objects forever
        if values_on_s3 and (removed := table_store.delete_folder(run_values(storage_root, run_id))):
            files, freed = files + 1, freed + removed
        instance.delete_run(run_id)
        for path in leftovers:
            files, freed = files + 1, freed + _size(path)
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    if doomed:
        instance.wipe_asset_cached_status(list(assets))
    hours = {record.dagster_run.tags.get(PARTITION_NAME_TAG) for record in doomed} - {None}
    return DeletedRuns(runs=len(doomed), hours=len(hours), files=files, bytes_freed=freed)


def _run_files(instance: DagsterInstance, run_id: str) -> list[Path]:
    """What a run leaves on disk with the SQLite storage: its event log database, its step outputs."""
    found = []
    shards = getattr(instance.event_log_storage, "_base_dir", None)  # SqliteEventLogStorage only
    if shards:
        found += [p for p in Path(shards).glob(f"{run_id}.db*") if p.is_file()]
    outputs = Path(instance.storage_directory()) / run_id
    return found + ([outputs] if outputs.is_dir() else [])


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
