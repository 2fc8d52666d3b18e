"""Issue 23's re-run cost: deleting the attempt a re-run replaced, against the load of the hour.

Run by hand against a node (the bench node: `ES_DIR=bench/work/es ES_PORT=9250 scripts/es.sh up`),
not a test. With the lifecycle functions the assets call, in this process, a fresh index prefix
(removed at the end): a synthetic hour of --rows flows (or --table) is loaded as an attempt and
published; then, for each --in-flight value, loaded again as a new attempt (timed: the load), published
(replacing the previous one), and the replaced attempt deleted with that many bulk delete bodies in
flight (timed: the deletion). All the while a thread counts the hour's alias and checks that every
answer is exactly --rows (searches stay exact). The ratio reported is deletion s / load s, both
taken in the same round. The integ-test-zip node has no `_delete_by_query` (no reindex module), so
the deletion is by id here; on a cluster that has it, `delete_replaced` uses it with slices=auto.

    .venv/bin/python bench/rerun_cost.py --url http://127.0.0.1:9250 --rows 1000000 --in-flight 1,2,4,8 \
        --out bench/results/rerun-cost-1m.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

from elasticsearch import ApiError
from publication_and_search import HOUR_KEY, load, synthetic_table

from flows_pipeline.es.index_lifecycle import publish
from flows_pipeline.es.replaced_attempts import delete_replaced, has_delete_by_query
from flows_pipeline.hour import hour_of
from flows_pipeline.orchestration.resources import FlowsElasticsearch
from flows_pipeline.tables.row_groups import parquet_metadata


class ExactCounts(threading.Thread):
    """Counts the hour's alias over and over; any answer other than `rows` is kept. A count the node
    refuses with 429 (its circuit breaker, under a load's memory pressure) is a search refused, not a
    wrong answer: it is counted apart and asked again, as a reader retries a 429."""

    def __init__(self, client, alias: str, rows: int) -> None:
        super().__init__(daemon=True)
        self.client, self.alias, self.rows = client, alias, rows
        self.stop = threading.Event()
        self.searches, self.wrong, self.refused = 0, [], 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                count = self.client.count(index=self.alias)["count"]
            except ApiError as err:
                if err.meta.status != 429:
                    raise
                self.refused += 1
                time.sleep(0.5)
                continue
            self.searches += 1
            if count != self.rows:
                self.wrong.append(count)
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:9250")
    parser.add_argument("--rows", type=int, default=1_000_000, help="flows of the synthetic hour")
    parser.add_argument("--table", type=Path, help="a flow table of hour 2021-10-28-03:00 instead")
    parser.add_argument("--steps", type=int, default=4, help="chunks loaded at once (the run's chunk steps)")
    parser.add_argument("--in-flight", default="1,2,4,8", help="bulk delete bodies in flight, one round each")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    prefix = f"rerunbench-{uuid.uuid4().hex[:6]}"
    es = FlowsElasticsearch(url=args.url, index_prefix=prefix)
    client = es.connect()
    hour = hour_of(HOUR_KEY)
    with tempfile.TemporaryDirectory(prefix="rerunbench-") as folder:
        table = args.table or synthetic_table(hour, args.rows, Path(folder))
        rows = parquet_metadata(table).num_rows
        doc: dict = {"url": args.url, "rows": rows, "prefix": prefix, "load_before": os.getloadavg()}
        doc["delete_by_query"] = has_delete_by_query(client)
        rounds = []
        try:
            previous = load(es, client, table, hour, args.steps)
            assert publish(client, es.layout, hour, previous, expected_docs=rows, rows=rows).verification.passed
            counts = ExactCounts(client, es.layout.hour_alias(hour), rows)
            counts.start()
            for in_flight in [int(n) for n in args.in_flight.split(",")]:
                started = time.perf_counter()
                attempt = load(es, client, table, hour, args.steps)
                load_s = time.perf_counter() - started
                published = publish(client, es.layout, hour, attempt, expected_docs=rows, rows=rows)
                assert published.verification.passed, published.verification
                started = time.perf_counter()
                deletion = delete_replaced(client, published.replaced, in_flight=in_flight)
                delete_s = time.perf_counter() - started
                rounds.append(
                    {
                        "in_flight": in_flight,
                        "load_s": round(load_s, 2),
                        "delete_s": round(delete_s, 2),
                        "delete_over_load": round(delete_s / load_s, 3),
                        "deleted": deletion.deleted,
                        "left": deletion.left,
                        "method": deletion.method,
                        "delete_docs_per_s": round(deletion.deleted / delete_s),
                    }
                )
                print(json.dumps(rounds[-1]), flush=True)
            if not counts.is_alive():
                raise RuntimeError("the counting thread died: the searches were not watched throughout")
            counts.stop.set()
            counts.join()
            doc["searches_during"] = counts.searches
            doc["searches_not_exact"] = counts.wrong
            doc["searches_refused_429"] = counts.refused
        finally:
            client.options(ignore_status=404).indices.delete(index=f"{prefix}-*", expand_wildcards="all")
    doc["rounds"] = rounds
    doc["load_after"] = os.getloadavg()
    print(
        f"searches during the rounds: {doc['searches_during']}, not exact: {len(doc['searches_not_exact'])}, "
        f"refused (429): {doc['searches_refused_429']}"
    )
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
