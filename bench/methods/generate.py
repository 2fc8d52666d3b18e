"""Generate one synthetic hour with flows_pipeline's own code: raw_flows, then flow_table.

Run as a process of its own so the harness can time it and measure its memory like any
method. Prints the rows and rates of both stages (the issue's flow_table target is
1,000,000 rows per second for raw -> flow_table).

    python bench/methods/generate.py --root DIR --partition 2021-10-28-03:00 --rows 200000
"""

from __future__ import annotations

import argparse

from _common import Stopwatch, report, rss_mb

from flows_pipeline.flow_tables import build_flow_table, write_raw_flows
from flows_pipeline.partitions import hour_of
from flows_pipeline.resources import FlowStorage
from flows_pipeline.synthetic import synthetic_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="FLOWS_STORAGE_ROOT of the generated tables")
    parser.add_argument("--partition", required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--row-group-rows", type=int, default=FlowStorage().row_group_rows)
    args = parser.parse_args()

    storage = FlowStorage(root=args.root, row_group_rows=args.row_group_rows)
    hour = hour_of(args.partition)
    raw_path, table_path = storage.table_path("raw_flows", hour), storage.table_path("flow_table", hour)
    baseline = rss_mb()

    clock = Stopwatch()
    raw_rows = write_raw_flows(synthetic_batches(hour, args.rows), raw_path, storage.row_group_rows)
    raw_s = clock.seconds()

    clock = Stopwatch()
    stats = build_flow_table(
        raw_path=raw_path,
        hour=hour,
        table_path=table_path,
        quarantine_path=storage.table_path("flow_quarantine", hour),
        row_group_rows=storage.row_group_rows,
        source="synthetic",
    )
    table_s = clock.seconds()
    report(
        {
            "baseline_rss_mb": baseline,
            "raw_rows": raw_rows,
            "raw_s": raw_s,
            "raw_rows_per_s": raw_rows / raw_s,
            "table_rows": stats.rows,
            "records_read": stats.records_read,
            "quarantined": stats.quarantined,
            "outside_hour": stats.outside_hour,
            "row_groups": stats.row_groups,
            "table_bytes": stats.bytes_on_disk,
            "flow_table_s": table_s,
            "flow_table_rows_per_s": stats.records_read / table_s,
            "table_path": str(table_path),
        }
    )


if __name__ == "__main__":
    main()
