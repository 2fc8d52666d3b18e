"""make demo: materialize hours with `dagster asset materialize`, then show what landed.

For each hour: rows in the flow table, documents in the hour's index, the index behind the
hour's alias, and the top 5 talkers by bytes, answered by an Elasticsearch aggregation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pyarrow.parquet as pq

from flows_pipeline.es.index_lifecycle import count, published_index
from flows_pipeline.es.queries import top_talkers
from flows_pipeline.hour import hour_of
from flows_pipeline.orchestration.resources import resolved_resources


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


def main(partition_keys: list[str]) -> None:
    resources = resolved_resources()
    storage, es = resources["storage"], resources["es"]
    client = es.connect()
    for key in partition_keys:
        hour = hour_of(key)
        started = time.monotonic()
        materialize(key)
        rows = pq.ParquetFile(storage.table_path("flow_table", hour)).metadata.num_rows
        alias = es.layout.hour_alias(hour)
        print(f"\n{key}  materialized in {time.monotonic() - started:.1f} s")
        print(f"  flow_table rows      {rows:>12,}")
        print(f"  documents in {alias}  {count(client, alias):>12,}")
        print(f"  bucket index         {published_index(client, es.layout, hour)}")
        print("  top 5 talkers by bytes:")
        for ip, sent in top_talkers(client, alias):
            print(f"    {ip:<40} {sent:>16,} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
