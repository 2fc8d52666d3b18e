"""Building an hour's tables: raw flows as received, then the normalized flow table.

Both stream: a batch is read, transformed and written before the next is read, so the memory of
a step is a few batches and a row group, whatever the hour's size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from flows_pipeline.flow_normalizer import QUARANTINE_SCHEMA, normalize
from flows_pipeline.flow_schema import FLOW_TABLE_SCHEMA
from flows_pipeline.partitions import Hour
from flows_pipeline.raw_flow_schema import RAW_FLOW_SCHEMA
from flows_pipeline.table_writer import RowGroupWriter, read_batches


@dataclass(frozen=True)
class FlowTableStats:
    records_read: int
    rows: int
    quarantined: int
    outside_hour: int
    row_groups: int
    bytes_on_disk: int


def write_raw_flows(batches: Iterable[pa.RecordBatch], path: Path, row_group_rows: int) -> int:
    """Land the source's records unchanged (RAW_FLOW_SCHEMA); returns the row count."""
    with RowGroupWriter(path, RAW_FLOW_SCHEMA, row_group_rows) as writer:
        for batch in batches:
            writer.write(batch)
    return writer.rows


def build_flow_table(
    raw_path: Path, hour: Hour, table_path: Path, quarantine_path: Path, row_group_rows: int, source: str
) -> FlowTableStats:
    """Normalize the raw table into the flow table and the quarantine table of the hour."""
    read = outside = 0
    with (
        RowGroupWriter(table_path, FLOW_TABLE_SCHEMA, row_group_rows) as flows,
        RowGroupWriter(quarantine_path, QUARANTINE_SCHEMA, row_group_rows) as quarantine,
    ):
        for raw in read_batches(raw_path, batch_rows=row_group_rows):
            result = normalize(raw, hour, source, first_source_row=read)
            flows.write(result.flows)
            quarantine.write(result.quarantine)
            read += raw.num_rows
            outside += result.outside_hour
    stats = FlowTableStats(
        records_read=read,
        rows=flows.rows,
        quarantined=quarantine.rows,
        outside_hour=outside,
        row_groups=-(-flows.rows // row_group_rows),
        bytes_on_disk=table_path.stat().st_size,
    )
    if stats.records_read != stats.rows + stats.quarantined + stats.outside_hour:
        raise AssertionError(f"flow table of {hour.key} lost records: {stats}")
    return stats
