"""make demo: materialize hours with `dagster asset materialize`, then show what landed.

The hours are the most recent closed ones (or the keys given as arguments), so the UI's partition
views, plots and Materialize dialog, which open on the newest hours, show them at once. For each
hour: rows in the flow table, quarantined records, documents behind the hour's alias, the bucket
index, and the top 5 talkers by bytes, answered by an Elasticsearch aggregation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime

from flows_pipeline.es.index_lifecycle import count, published_index
from flows_pipeline.es.queries import top_talkers
from flows_pipeline.hour import hour_of, recent_closed_hours
from flows_pipeline.orchestration.resources import resolved_resources
from flows_pipeline.tables.row_groups import parquet_metadata


def materialize(partition_key: str) -> None:
    command = [
        os.path.join(os.path.dirname(sys.executable), "dagster"),
        "asset", "materialize", "-m", "flows_pipeline.definitions", "--select", "*", "--partition", partition_key,
    ]  # fmt: skip
    log_path = os.path.join(os.environ.get("DAGSTER_HOME", "."), f"demo-{partition_key.replace(':', '')}.log")
    with open(log_path, "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"materializing {partition_key} failed (exit {done.returncode}); the run's log is in {log_path}")


DEMO_HOURS = 3
UI_URL = "http://127.0.0.1:3000"


def main(partition_keys: list[str]) -> None:
    resources = resolved_resources()
    storage, es = resources["storage"], resources["es"]
    client = es.connect()
    for key in partition_keys:
        hour = hour_of(key)
        started = time.monotonic()
        materialize(key)
        # a local file or an S3 object alike (FLOWS_STORAGE_ROOT)
        rows = parquet_metadata(storage.table_path("flow_table", hour)).num_rows
        quarantined = parquet_metadata(storage.table_path("flow_quarantine", hour)).num_rows
        alias = es.layout.hour_alias(hour)
        print(f"\n{key}  materialized in {time.monotonic() - started:.1f} s")
        print(f"  flow_table rows      {rows:>12,}")
        print(f"  flow_quarantine rows {quarantined:>12,}")
        print(f"  documents in {alias}  {count(client, alias):>12,}")
        print(f"  bucket index         {published_index(client, es.layout, hour)}")
        print("  top 5 talkers by bytes:")
        for ip, sent in top_talkers(client, alias):
            print(f"    {ip:<40} {sent:>16,} bytes")
    first, last = partition_keys[0], partition_keys[-1]
    print(
        f"\nNext: `make ui`, then open {UI_URL}/assets/flow_index?view=partitions (the hours {first} to {last} "
        f"are the newest filled partitions; their metrics under Plots), {UI_URL}/assets/flow_quarantine for "
        f"what was set aside and why, and {UI_URL}/runs for one run per hour. Ctrl-C stops the UI."
    )


if __name__ == "__main__":
    main(sys.argv[1:] or recent_closed_hours(datetime.now(UTC), DEMO_HOURS))
