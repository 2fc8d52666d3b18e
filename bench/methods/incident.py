"""The incident's loader, reproduced faithfully (see ../shared/docs/incident.md).

1. the whole hour read into one pandas DataFrame;
2. every bulk action of the hour built in this, the parent, process (`generate_all_content`);
3. split into chunks of `flows_split_size` actions (`split_all_content`);
4. `ProcessPoolExecutor()` with no `max_workers` (so os.cpu_count()) and the `fork` start method,
   created after all of that exists, one task per chunk calling `elasticsearch.helpers.bulk`.

It is meant to use memory in proportion to the hour: the harness runs it under an address-space
limit and a tree-memory guard and records an out-of-memory end as a result.

    python bench/methods/incident.py --url http://127.0.0.1:9250 --index NAME --table FILE
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pandas as pd
from _common import Stopwatch, report, rss_mb
from elasticsearch import Elasticsearch, helpers

# 7,850,484 flows in 66 chunks of ~15 MB, as in the post-mortem: ~118,947 actions a chunk.
INCIDENT_SPLIT_SIZE = 118_947


def generate_all_content(frame: pd.DataFrame, index: str) -> list[dict]:
    """The whole hour's bulk actions, in the parent, before any worker exists.

    Each document also carries `event.sequence` = its row, as flows_pipeline's documents do.
    """
    content = []
    for row, doc in enumerate(frame.to_dict(orient="records")):
        doc["event.sequence"] = row
        content.append({"_index": index, "_id": str(row), "_source": doc})
    return content


def split_all_content(content: list[dict], split_size: int) -> list[list[dict]]:
    return [content[i : i + split_size] for i in range(0, len(content), split_size)]


def bulk_chunk(url: str, chunk: list[dict]) -> int:
    """One worker task: the client's bulk helper over one chunk (500 actions a request, its default)."""
    client = Elasticsearch(url, request_timeout=300)
    indexed, _ = helpers.bulk(client, chunk)
    return indexed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--table", required=True, help="the hour's flow table (Parquet)")
    parser.add_argument("--split-size", type=int, default=INCIDENT_SPLIT_SIZE)
    args = parser.parse_args()

    baseline = rss_mb()
    clock = Stopwatch()
    # numpy_nullable: a plain read gives NaN for null ports, which Elasticsearch 9 rejects as JSON
    frame = pd.read_parquet(args.table, dtype_backend="numpy_nullable")
    content = generate_all_content(frame, args.index)
    chunks = split_all_content(content, args.split_size)
    built_s, parent_rss = clock.seconds(), rss_mb()
    # the incident's pool: default max_workers (os.cpu_count()), fork, created after `content`
    with ProcessPoolExecutor(mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(bulk_chunk, args.url, chunk) for chunk in chunks]
        indexed = sum(future.result() for future in futures)
    report(
        {
            "baseline_rss_mb": baseline,
            "docs_sent": indexed,
            "load_s": clock.seconds(),
            "build_s": built_s,
            "parent_rss_after_build_mb": parent_rss,
            "workers": os.cpu_count(),
            "chunks": len(chunks),
            "split_size": args.split_size,
        }
    )


if __name__ == "__main__":
    main()
