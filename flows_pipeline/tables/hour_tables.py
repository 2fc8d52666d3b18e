"""Building an hour's tables: raw flows as received, then the normalized flow table.

Both stream: a batch is read, transformed and written before the next is read, so the memory of
a step is a few batches and a row group, whatever the hour's size. Every record read ends in
exactly one place: the flow table, the quarantine (with its reason), or the count of flows that
belong to another hour.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow.compute as pc

from flows_pipeline.errors import TerminalError
from flows_pipeline.hour import Hour
from flows_pipeline.sources.raw_schema import QUARANTINE_SCHEMA, RAW_FLOW_SCHEMA
from flows_pipeline.sources.source_reader import ReceivedBatch
from flows_pipeline.tables.flow_schema import FLOW_TABLE_SCHEMA
from flows_pipeline.tables.normalizer import DEFAULT_OPTIONS, TIME_COLUMNS, NormalizeOptions, belongs_to_hour, normalize
from flows_pipeline.tables.row_groups import RowGroupWriter, parquet_metadata, read_batches
from flows_pipeline.tables.table_store import TableLocation, size


@dataclass(frozen=True)
class RawTableStats:
    rows: int
    rejected: int  # records that could not be read as flows (in the raw quarantine)


@dataclass(frozen=True)
class FlowTableStats:
    records_read: int
    rows: int
    quarantined: int
    outside_hour: int
    row_groups: int
    bytes_on_disk: int  # of the flow table, locally or in its bucket
    sha256: str  # of the flow table file, recorded beside it and checked before it is indexed


class RecordsLostError(TerminalError):
    """Records read that ended in none of the flow table, the quarantine or another hour: a bug."""


def write_raw_flows(
    received: Iterable[ReceivedBatch], raw_path: TableLocation, raw_quarantine_path: TableLocation, row_group_rows: int
) -> RawTableStats:
    """Land the source's records unchanged (RAW_FLOW_SCHEMA), and those unreadable apart."""
    with (
        RowGroupWriter(raw_path, RAW_FLOW_SCHEMA, row_group_rows) as raw,
        RowGroupWriter(raw_quarantine_path, QUARANTINE_SCHEMA, row_group_rows) as rejected,
    ):
        for batch in received:
            raw.write(batch.raw)
            rejected.write(batch.rejected)
    return RawTableStats(rows=raw.rows, rejected=rejected.rows)


def build_flow_table(
    raw_path: TableLocation,
    raw_quarantine_path: TableLocation,
    hour: Hour,
    table_path: TableLocation,
    quarantine_path: TableLocation,
    row_group_rows: int,
    options: NormalizeOptions = DEFAULT_OPTIONS,
) -> FlowTableStats:
    """Normalize the raw table into the hour's flow table; its quarantine gets every rejected record."""
    read = outside = 0
    with (
        RowGroupWriter(table_path, FLOW_TABLE_SCHEMA, row_group_rows) as flows,
        RowGroupWriter(quarantine_path, QUARANTINE_SCHEMA, row_group_rows) as quarantine,
    ):
        for rejected in read_batches(raw_quarantine_path, batch_rows=row_group_rows):
            quarantine.write(rejected)
        for raw in read_batches(raw_path, batch_rows=row_group_rows):
            result = normalize(raw, hour, options)
            flows.write(result.flows)
            quarantine.write(result.quarantine)
            read += raw.num_rows
            outside += result.outside_hour
    read += parquet_metadata(raw_quarantine_path).num_rows
    stats = FlowTableStats(
        records_read=read,
        rows=flows.rows,
        quarantined=quarantine.rows,
        outside_hour=outside,
        row_groups=-(-flows.rows // row_group_rows),
        bytes_on_disk=size(table_path) or 0,
        sha256=flows.digest,
    )
    if stats.records_read != stats.rows + stats.quarantined + stats.outside_hour:
        raise RecordsLostError(f"flow table of {hour.key} does not account for every record: {stats}")
    return stats


TABLES = ("raw_flows", "raw_quarantine", "flow_table", "flow_quarantine")


@dataclass(frozen=True)
class RecordTally:
    records_read: int
    rows: int
    quarantined: int
    outside_hour: int

    @property
    def balanced(self) -> bool:
        return self.records_read == self.rows + self.quarantined + self.outside_hour


def recount(paths: dict[str, TableLocation], hour: Hour, time_unit: str = "ns") -> RecordTally:
    """Records read = flow rows + quarantined + other hours, counted again from the files.

    Row counts come from the Parquet footers; flows of other hours are recounted from the raw
    table's times (three columns, batch by batch).
    """
    rows = {name: parquet_metadata(paths[name]).num_rows for name in TABLES}
    outside = 0
    for batch in read_batches(paths["raw_flows"], columns=TIME_COLUMNS):
        outside += batch.num_rows - (pc.sum(belongs_to_hour(batch, hour, time_unit)).as_py() or 0)
    return RecordTally(
        records_read=rows["raw_flows"] + rows["raw_quarantine"],
        rows=rows["flow_table"],
        quarantined=rows["flow_quarantine"],
        outside_hour=outside,
    )
