"""An hour's records from the configured source, as raw batches plus the records rejected on read.

Sources: `synthetic` (generated, for demos and benchmarks), `nfcapd` (nfdump's collector files),
`goflow2` (GoFlow2 JSON lines), `csv`. File-based sources read the hour's rotated files
(flow_files.py); a file that cannot be read fails the run naming it, or, when configured, is
skipped and reported. An hour without files fails clearly, or, when configured, is empty.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal, get_args

import pyarrow as pa

from flows_pipeline.errors import ConfigurationError
from flows_pipeline.hour import Hour
from flows_pipeline.sources.nfcapd import nfcapd_flow_count, nfcapd_record_blocks, nfdump_batch, nfdump_received
from flows_pipeline.sources.nffile import NotReadHere, nffile_flow_batches
from flows_pipeline.sources.raw_schema import QUARANTINE_SCHEMA, RAW_FLOW_SCHEMA
from flows_pipeline.sources.records import BadFlowFileError, Received, csv_records, goflow2_records
from flows_pipeline.sources.rotated_files import (
    FileStillWrittenError,
    NoFlowFilesError,
    UnplacedFileError,
    files_for_hour,
    scan_folder,
)
from flows_pipeline.sources.synthetic import synthetic_batches
from flows_pipeline.sources.time_units import TimeUnit

log = logging.getLogger(__name__)

# Records parsed in Python are held as objects until they become a batch (~1 KB each), so
# file sources hand over small batches; the table writer still makes full row groups of them.
RECEIVED_BATCH_ROWS = 8_192


SourceKind = Literal["synthetic", "nfcapd", "goflow2", "csv"]


@dataclass(frozen=True)
class SourceSettings:
    """Where and how an hour is read; the defaults live in the `FlowSource` resource."""

    kind: SourceKind
    root: Path | None  # folder of the collector's files (any sub-folder layout); None for synthetic
    lag: timedelta  # how long after an hour its flows may still arrive
    skip_bad_files: bool  # False: an unreadable file fails the run
    empty_hour_ok: bool  # False: an hour without files fails the run
    synthetic_rows: int
    time_unit: TimeUnit = "ns"  # of the numeric times in GoFlow2 and CSV files


@dataclass
class SourceReport:
    """What was read for the hour: files, and files skipped with their reason."""

    files: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    # the rest of the source folder, so that no file in it goes untold (rotated_files.scan_folder)
    other_hours: int = 0  # the format's finished files of other hours
    in_progress: list[str] = field(default_factory=list)  # being written, holding only later arrivals
    other_names: list[str] = field(default_factory=list)  # not named as the format's files are


@dataclass(frozen=True)
class ReceivedBatch:
    raw: pa.RecordBatch  # RAW_FLOW_SCHEMA
    rejected: pa.RecordBatch  # QUARANTINE_SCHEMA: records that could not even be read as flows


# Built on first use, not at import: an Arrow batch made from Python objects loads pyarrow's pandas
# shim, i.e. imports pandas (~0.6 s, ~40 MB), which the run's orchestrating process never needs.
@functools.cache
def _no_rejects() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=QUARANTINE_SCHEMA)


def _nfcapd_batches(path: Path, batch_rows: int) -> Iterator[ReceivedBatch]:
    """The file read natively (nffile.py), block by block; from the first block it cannot read
    exactly on, through nfdump's JSON: blocks of it that Arrow reads whole as they are, any other
    block record by record."""
    expected = nfcapd_flow_count(path)  # before any row is passed on: a bad file can still be skipped
    read = 0
    try:
        for raw in nffile_flow_batches(path):
            read += raw.num_rows
            yield ReceivedBatch(raw, _no_rejects())
    except NotReadHere as why:
        log.info("%s; nfdump reads it from flow %d on", why, read + 1)
    else:
        if read != expected:
            raise BadFlowFileError(path, f"read {read} flows, but the file's statistics say {expected}")
        return
    source, number = str(path), read + 1
    for texts in nfcapd_record_blocks(path, skip=read):
        raw = nfdump_batch(texts, source, number)
        if raw is None:
            received = (nfdump_received(source, number + i, text) for i, text in enumerate(texts))
            yield from _batches(received, batch_rows)
        else:
            yield ReceivedBatch(raw, _no_rejects())
        number += len(texts)


def _line_batches(
    reader: Callable[[Path, str], Iterator[Received]],
) -> Callable[[Path, int, str], Iterator[ReceivedBatch]]:
    return lambda path, batch_rows, time_unit: _batches(reader(path, time_unit), batch_rows)


FILE_FORMATS: dict[str, tuple[tuple[str, ...], Callable[[Path, int, str], Iterator[ReceivedBatch]]]] = {
    # nfdump prints its times as text in UTC (TZ=UTC): no unit to configure
    "nfcapd": (("",), lambda path, batch_rows, _time_unit: _nfcapd_batches(path, batch_rows)),
    "goflow2": ((".json", ".jsonl"), _line_batches(goflow2_records)),
    "csv": ((".csv",), _line_batches(csv_records)),
}
SOURCE_KINDS: tuple[str, ...] = get_args(SourceKind)


# raw_flows + flow_table of synthetic flows on disk, measured: ~58 MB for 1M flows
SYNTHETIC_TABLE_BYTES_PER_ROW = 60


def source_bytes(settings: SourceSettings, hour: Hour) -> int:
    """What the hour's source holds, in bytes: its files' size, or an estimate of synthetic tables."""
    if settings.kind == "synthetic" or settings.root is None:
        return settings.synthetic_rows * SYNTHETIC_TABLE_BYTES_PER_ROW
    suffixes, _ = FILE_FORMATS[settings.kind]
    try:
        return sum(f.path.stat().st_size for f in files_for_hour(settings.root, hour, settings.lag, suffixes))
    except (NoFlowFilesError, OSError):
        return 0  # reading the hour says what is wrong, with the file's name


def read_hour(settings: SourceSettings, hour: Hour, report: SourceReport, batch_rows: int) -> Iterator[ReceivedBatch]:
    if settings.kind == "synthetic":
        for batch in synthetic_batches(hour, settings.synthetic_rows, batch_rows):
            yield ReceivedBatch(batch, _no_rejects())
        return
    if settings.kind not in FILE_FORMATS:
        raise ConfigurationError(f"unknown flow source kind {settings.kind!r} (FLOWS_SOURCE); one of {SOURCE_KINDS}")
    if settings.root is None:
        raise ConfigurationError(f"the {settings.kind} source needs a folder: set FLOWS_SOURCE_ROOT")
    suffixes, reader = FILE_FORMATS[settings.kind]
    scan = scan_folder(settings.root, hour, settings.lag, suffixes)
    if scan.still_written:
        path, why = next(iter(scan.still_written.items()))
        raise FileStillWrittenError(
            f"{path} may hold flows of hour {hour.key} and is {why}; "
            + (f"and {len(scan.still_written) - 1} more such files; " if len(scan.still_written) > 1 else "")
            + "the hour is read once it is finished (the run is retried; the catch-up sensor requests it again)"
        )
    if scan.unplaced and not settings.skip_bad_files:
        path, why = next(iter(scan.unplaced.items()))
        raise UnplacedFileError(
            f"{path}: {why}, so no hour can claim it (nor can {hour.key}); rename it with the time its flows "
            "arrived (UTC, or with its offset) or move it out of FLOWS_SOURCE_ROOT; FLOWS_BAD_FILES=skip reports "
            "such files and goes on"
            + (f" ({len(scan.unplaced) - 1} more such files)" if len(scan.unplaced) > 1 else "")
        )
    report.skipped |= scan.unplaced
    report.other_hours, report.in_progress, report.other_names = scan.other_hours, scan.in_progress, scan.other_names
    files = scan.claimed
    if not files and not settings.empty_hour_ok:
        last = hour.end + settings.lag
        raise NoFlowFilesError(
            f"no {settings.kind} files for hour {hour.key} under {settings.root} (looked for files named "
            f"{hour.start:%Y%m%d%H%M} up to before {last:%Y%m%d%H%M}); if the hour really had no traffic, "
            "set FLOWS_EMPTY_HOUR=empty to index it as empty"
        )
    for flow_file in files:
        yielded = False
        try:
            for batch in reader(flow_file.path, min(batch_rows, RECEIVED_BATCH_ROWS), settings.time_unit):
                yielded = True
                yield batch
        except BadFlowFileError as bad:
            # a file found bad after some of its rows were passed on cannot be skipped cleanly
            if not settings.skip_bad_files or yielded:
                raise
            log.warning("skipping %s", bad)
            report.skipped[str(flow_file.path)] = bad.problem
            continue
        report.files.append(str(flow_file.path))


def _batches(records: Iterator[Received], batch_rows: int) -> Iterator[ReceivedBatch]:
    """Received records grouped into batches of at most `batch_rows` records (good and rejected)."""
    good: dict[str, list] = {name: [] for name in RAW_FLOW_SCHEMA.names}
    bad: list[dict] = []
    count = 0
    for received in records:
        if received.row is None:
            bad.append(
                {
                    "reason": received.reason,
                    "source": received.source_file,
                    "source_row": received.source_row,
                    "raw_record": received.raw_text,
                }
            )
        else:
            for name, value in received.row.items():
                good[name].append(value)
            good["source_file"].append(received.source_file)
            good["source_row"].append(received.source_row)
            count += 1
        if count + len(bad) >= batch_rows:
            yield _batch(good, bad)
            good = {name: [] for name in RAW_FLOW_SCHEMA.names}
            bad, count = [], 0
    if count or bad:
        yield _batch(good, bad)


def _batch(good: dict[str, list], bad: list[dict]) -> ReceivedBatch:
    return ReceivedBatch(
        pa.RecordBatch.from_pydict(good, schema=RAW_FLOW_SCHEMA),
        pa.RecordBatch.from_pylist(bad, schema=QUARANTINE_SCHEMA),
    )
