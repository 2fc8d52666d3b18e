"""Issue 10's other costs: publishing an hour, deleting a replaced attempt, and filtered aliases in searches.

Run by hand against a node (the bench node: `ES_DIR=bench/work/es ES_PORT=9250 scripts/es.sh up`),
not a test. Through the lifecycle functions the assets call (prepare_load, index_chunk, publish,
delete_replaced, top_talkers), in this process, with a fresh index prefix (removed at the end):

1. loads the given hour's flow table (--table; hour 2021-10-28-03:00) as attempt A and publishes
   it; loads it again as attempt B (a re-run) and publishes it, which replaces A; deletes A's
   documents. Each publication is timed whole and per request (the refresh, the verification,
   the one `_aliases` call, ...), and so are delete_replaced and the publish step's top-talkers
   query;
2. loads --day-hours more synthetic hours of --day-rows flows into the same day bucket, so the
   day's read alias selects several attempts;
3. times a terms and a date_histogram aggregation, best and median of --rounds (request_cache
   off): per hour through the hour alias (filtered to the attempt) against the same query on the
   bucket index itself with a plain query (`term` on the attempt, and a `range` on the hour), and
   over the day through the read alias against the bucket index unfiltered (which then holds
   exactly the published documents).

    .venv/bin/python bench/publication_and_search.py --url http://127.0.0.1:9250 \
        --table bench/work/data/rows-7850484/flow_table/2021-10-28/03.parquet \
        --out bench/results/session4-publication.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from elasticsearch import Elasticsearch

from flows_pipeline.es.chunk_loading import ChunkTask, index_chunk
from flows_pipeline.es.chunk_plan import plan_chunks
from flows_pipeline.es.index_lifecycle import LoadAttempt, prepare_load, publish
from flows_pipeline.es.queries import top_talkers
from flows_pipeline.es.replaced_attempts import delete_replaced
from flows_pipeline.hour import MS_PER_HOUR, Hour, hour_of
from flows_pipeline.orchestration.resources import FlowsElasticsearch
from flows_pipeline.sources.synthetic import synthetic_batches
from flows_pipeline.tables.flow_schema import FLOW_TABLE_SCHEMA
from flows_pipeline.tables.normalizer import normalize
from flows_pipeline.tables.row_groups import RowGroupWriter, parquet_metadata

HOUR_KEY = "2021-10-28-03:00"


class RequestLog:
    """Every request the client sends, timed: (method, path, seconds)."""

    def __init__(self, client: Elasticsearch) -> None:
        self.requests: list[tuple[str, str, float]] = []
        transport = client.transport
        send = transport.perform_request

        def timed(method, target, **kwargs):
            started = time.perf_counter()
            try:
                return send(method, target, **kwargs)
            finally:
                self.requests.append((method, target.split("?")[0], time.perf_counter() - started))

        transport.perform_request = timed

    def since(self, mark: int) -> list[dict]:
        return [{"request": f"{m} {p}", "s": round(s, 4)} for m, p, s in self.requests[mark:]]


def load(es: FlowsElasticsearch, client: Elasticsearch, table: Path, hour: Hour, steps: int) -> LoadAttempt:
    """The table as one new attempt of the hour, `steps` chunks loaded at once (as the run's chunk steps)."""
    attempt = prepare_load(client, es.layout, es.safe_url, hour, uuid.uuid4().hex, int(time.time() * 1000))
    chunks = plan_chunks(table, steps, es.max_row_groups_per_chunk)
    started = time.monotonic()
    with ThreadPoolExecutor(steps) as pool:
        results = list(
            pool.map(lambda c: index_chunk(client, es.safe_url, ChunkTask(attempt, c), es.limits, es.retry), chunks)
        )
    indexed = sum(r.indexed for r in results)
    print(f"loaded {indexed:,} documents into {attempt.alias} in {time.monotonic() - started:.1f} s", flush=True)
    return attempt


def timed_publish(es: FlowsElasticsearch, client: Elasticsearch, log: RequestLog, hour: Hour, attempt, rows: int):
    mark = len(log.requests)
    started = time.perf_counter()
    published = publish(client, es.layout, hour, attempt, expected_docs=rows, rows=rows)
    publish_s = time.perf_counter() - started
    assert published.verification.passed, published.verification
    requests = log.since(mark)
    mark = len(log.requests)
    started = time.perf_counter()
    deleted = delete_replaced(client, published.replaced, in_flight=es.delete_in_flight).deleted
    delete_s = time.perf_counter() - started
    delete_requests = log.since(mark)
    started = time.perf_counter()
    top_talkers(client, es.layout.hour_alias(hour))
    talkers_s = time.perf_counter() - started
    aliases_calls = [r["s"] for r in requests if r["request"] == "POST /_aliases"]
    return {
        "attempt": attempt.alias,
        "publish_s": round(publish_s, 3),
        "aliases_call_s": aliases_calls,
        "requests": requests,
        "replaced_attempts": len(published.replaced),
        "delete_replaced_s": round(delete_s, 3),
        "deleted_documents": deleted,
        "delete_docs_per_s": round(deleted / delete_s) if deleted else None,
        "delete_requests": len(delete_requests),
        "delete_refresh_s": [r["s"] for r in delete_requests if r["request"].endswith("/_refresh")],
        "top_talkers_s": round(talkers_s, 3),
        "publish_step_s": round(publish_s + delete_s + talkers_s, 3),
    }


def synthetic_table(hour: Hour, rows: int, folder: Path) -> Path:
    path = folder / f"{hour.start:%H}.parquet"
    with RowGroupWriter(path, FLOW_TABLE_SCHEMA, 65_536) as writer:
        for raw in synthetic_batches(hour, rows):
            writer.write(normalize(raw, hour).flows)
    return path


AGGREGATIONS = {
    "terms": {"top_sources": {"terms": {"field": "source.ip", "size": 10}}},
    "date_histogram": {
        "per_minute": {
            "date_histogram": {"field": "@timestamp", "fixed_interval": "1m"},
            "aggs": {"bytes": {"sum": {"field": "network.bytes"}}},
        }
    },
}


def time_search(client: Elasticsearch, index: str, query: dict | None, aggs: dict, rounds: int) -> dict:
    took, wall, hits = [], [], None
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.search(
            index=index, size=0, query=query, aggs=aggs, request_cache=False, track_total_hits=True
        )
        wall.append(time.perf_counter() - started)
        took.append(response["took"])
        hits = response["hits"]["total"]["value"]
    return {
        "index": index,
        "query": query,
        "hits": hits,
        "took_ms_best": min(took),
        "took_ms_median": statistics.median(took),
        "wall_ms_best": round(min(wall) * 1000, 1),
        "wall_ms_median": round(statistics.median(wall) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:9250")
    parser.add_argument("--table", type=Path, required=True, help="a flow table of hour 2021-10-28-03:00")
    parser.add_argument("--steps", type=int, default=4, help="chunks loaded at once (the run's chunk steps)")
    parser.add_argument("--day-hours", type=int, default=3, help="more hours (00:00, 01:00, ...) in the day bucket")
    parser.add_argument("--day-rows", type=int, default=1_000_000, help="flows in each of those hours")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", action="store_true", help="leave the indices (prefix printed)")
    args = parser.parse_args()

    prefix = f"pubbench-{uuid.uuid4().hex[:6]}"
    es = FlowsElasticsearch(url=args.url, index_prefix=prefix)
    client = es.connect()
    log = RequestLog(client)
    hour = hour_of(HOUR_KEY)
    rows = parquet_metadata(args.table).num_rows
    doc: dict = {
        "url": args.url,
        "table": str(args.table),
        "rows": rows,
        "prefix": prefix,
        "load_before": os.getloadavg(),
    }
    try:
        first = load(es, client, args.table, hour, args.steps)
        doc["first_publication"] = timed_publish(es, client, log, hour, first, rows)
        print(json.dumps({k: v for k, v in doc["first_publication"].items() if k != "requests"}), flush=True)
        rerun = load(es, client, args.table, hour, args.steps)
        doc["rerun_publication"] = timed_publish(es, client, log, hour, rerun, rows)
        print(json.dumps({k: v for k, v in doc["rerun_publication"].items() if k != "requests"}), flush=True)

        day_hours = []
        with tempfile.TemporaryDirectory(prefix="pubbench-") as folder:
            for h in range(args.day_hours):
                other = hour_of(f"2021-10-28-{h:02d}:00")
                table = synthetic_table(other, args.day_rows, Path(folder))
                attempt = load(es, client, table, other, args.steps)
                publish(client, es.layout, other, attempt, expected_docs=args.day_rows, rows=args.day_rows)
                day_hours.append(other.key)
        client.indices.forcemerge(index=rerun.bucket, max_num_segments=None, flush=True, wait_for_completion=True)
        client.indices.refresh(index=rerun.bucket)
        doc["day_hours"] = [hour.key, *day_hours]
        doc["load_searches"] = os.getloadavg()

        hour_range = {"range": {"@timestamp": {"gte": hour.start_ms, "lt": hour.start_ms + MS_PER_HOUR}}}
        searches = {}
        for name, aggs in AGGREGATIONS.items():
            searches[f"hour/{name}/hour alias (filtered)"] = time_search(
                client, es.layout.hour_alias(hour), None, aggs, args.rounds
            )
            searches[f"hour/{name}/bucket, term on the attempt"] = time_search(
                client, rerun.bucket, {"term": {"flows.attempt": rerun.token}}, aggs, args.rounds
            )
            searches[f"hour/{name}/bucket, range on the hour"] = time_search(
                client, rerun.bucket, hour_range, aggs, args.rounds
            )
            searches[f"day/{name}/read alias (filtered)"] = time_search(
                client, es.layout.read_alias, None, aggs, args.rounds
            )
            searches[f"day/{name}/bucket, unfiltered"] = time_search(client, rerun.bucket, None, aggs, args.rounds)
        doc["searches"] = searches
        doc["rounds"] = args.rounds
        for name, result in searches.items():
            print(
                f"{name:55s} hits {result['hits']:>10,}  took best {result['took_ms_best']:>5} ms  "
                f"median {result['took_ms_median']:>6} ms",
                flush=True,
            )
        doc["load_after"] = os.getloadavg()
    finally:
        if not args.keep:
            client.options(ignore_status=404).indices.delete(index=f"{prefix}-*", expand_wildcards="all")
        if args.out:
            args.out.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
