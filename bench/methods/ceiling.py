"""The ceiling: pre-encoded `_bulk` bodies replayed from disk with N requests in flight.

No Python encoding at all: each of N threads reads a body file's bytes and POSTs them
(urllib3, one keep-alive connection per thread), with the pipeline's filter_path so the
response costs Elasticsearch the same (`{"errors":false}` when every item succeeded).
What this reaches is what the node itself can ingest.

    python bench/methods/ceiling.py --url URL --index NAME --bodies DIR --concurrency 4
"""

from __future__ import annotations

import argparse
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import urllib3
from _common import Stopwatch, report, rss_mb

# flows_pipeline.es.bulk_sender.ANY_ERRORS, the response filter of its first try, so both make the node
# answer alike; written out, as importing the pipeline would load Arrow into this process
ANY_ERRORS = "errors"


class Replayer:
    def __init__(self, url: str, index: str, bodies: Path, concurrency: int) -> None:
        self._endpoint = f"{url}/{index}/_bulk?filter_path={ANY_ERRORS}"
        self._bodies = bodies
        self._pool = urllib3.PoolManager(maxsize=concurrency, timeout=urllib3.Timeout(total=300))
        self._lock = threading.Lock()
        self.failed_items = 0
        self.first_error: str | None = None

    def post(self, entry: dict) -> int:
        """One body, as read from disk; returns its documents accepted."""
        payload = (self._bodies / entry["file"]).read_bytes()
        response = self._pool.request(
            "POST", self._endpoint, body=payload, headers={"Content-Type": "application/x-ndjson"}
        )
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status} for {entry['file']}: {response.data[:500]!r}")
        if not json.loads(response.data).get("errors"):
            return entry["docs"]
        # which items failed is not in the short answer; the run fails, and its _count tells how many
        with self._lock:
            self.failed_items += entry["docs"]
            self.first_error = self.first_error or f"items failed in {entry['file']}"
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--bodies", required=True, help="folder of encode_bodies.py")
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()

    bodies = Path(args.bodies)
    manifest = json.loads((bodies / "manifest.json").read_text())
    replayer = Replayer(args.url, args.index, bodies, args.concurrency)
    baseline = rss_mb()
    clock = Stopwatch()
    with ThreadPoolExecutor(args.concurrency) as pool:
        indexed = sum(pool.map(replayer.post, manifest))
    report(
        {
            "baseline_rss_mb": baseline,
            "docs_sent": indexed,
            "load_s": clock.seconds(),
            "bodies": len(manifest),
            "failed_items": replayer.failed_items,
            "first_error": replayer.first_error,
        }
    )
    if replayer.failed_items:
        raise SystemExit(f"{replayer.failed_items} documents in failed bodies; first: {replayer.first_error}")


if __name__ == "__main__":
    main()
