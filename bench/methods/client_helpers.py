"""What a user would write with the official client: parallel_bulk or streaming_bulk, row by row.

The same Parquet flow table, read a record batch at a time, `to_pylist()`, one action dict per
row (the row number as `_id` and `event.sequence`, as in flows_pipeline's documents), into the helper with its defaults
(chunk_size 500 unless --chunk-size).

    python bench/methods/client_helpers.py --helper parallel_bulk --threads 4 --url URL --index NAME --table FILE
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pyarrow.parquet as pq
from _common import Stopwatch, report, rss_mb
from elasticsearch import Elasticsearch, helpers

READ_BATCH_ROWS = 10_000


def actions(table: str, index: str) -> Iterator[dict]:
    row = 0
    for batch in pq.ParquetFile(table).iter_batches(batch_size=READ_BATCH_ROWS):
        for doc in batch.to_pylist():
            doc["event.sequence"] = row  # as in flows_pipeline's documents
            yield {"_index": index, "_id": str(row), "_source": doc}
            row += 1


def run_helper(client: Elasticsearch, helper: str, docs: Iterator[dict], threads: int, chunk_size: int) -> int:
    """Consume the helper's results (both are lazy) and count the documents it reports indexed."""
    if helper == "parallel_bulk":
        results = helpers.parallel_bulk(client, docs, thread_count=threads, chunk_size=chunk_size)
    else:
        results = helpers.streaming_bulk(client, docs, chunk_size=chunk_size)
    return sum(1 for ok, _ in results if ok)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--helper", choices=("parallel_bulk", "streaming_bulk"), required=True)
    parser.add_argument("--threads", type=int, default=4, help="parallel_bulk's thread_count")
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--url", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--table", required=True)
    args = parser.parse_args()

    client = Elasticsearch(args.url, request_timeout=300)
    baseline = rss_mb()
    clock = Stopwatch()
    indexed = run_helper(client, args.helper, actions(args.table, args.index), args.threads, args.chunk_size)
    report(
        {
            "baseline_rss_mb": baseline,
            "docs_sent": indexed,
            "load_s": clock.seconds(),
            "helper": args.helper,
            "thread_count": args.threads if args.helper == "parallel_bulk" else 1,
            "chunk_size": args.chunk_size,
        }
    )


if __name__ == "__main__":
    main()
