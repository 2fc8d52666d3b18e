"""What the order and number of bulk requests in flight cost Elasticsearch, for the same bodies.

Run by hand against the bench node (`ES_DIR=bench/work/es ES_PORT=9250 ES_HEAP=2g scripts/es.sh
up`), not a test. Replays the bodies of `methods/encode_bodies.py` (the pipeline's own, in its
chunk order) into a fresh index with the harness's mapping and load settings, once per layout and
round, and records the wall time and the node's CPU seconds (its process's user + system time)
for each. A layout is `ORDER:STREAMS:PER_STREAM`:

- `seq:4:1`: 4 requests in flight taking the bodies in row order (the ceiling of bench/run.py);
- `chunks:4:1`: the bodies split into 4 consecutive runs, as the pipeline's 4 chunk steps, each
  run sent by 1 request at a time (4 in flight);
- `chunks:4:2`: the same with 2 at a time per run (8 in flight: `es_bulk_steps` 4 with the default
  `FLOWS_BULK_IN_FLIGHT` 2).

Layouts alternate within a round, so a slow round (the JVM still compiling, merges) weighs on all.

    .venv/bin/python bench/methods/encode_bodies.py --out bench/work/bodies/concurrency \
        --table bench/work/data/rows-7850484/flow_table/2021-10-28/03.parquet
    .venv/bin/python bench/request_concurrency.py --bodies bench/work/bodies/concurrency \
        --layouts seq:4:1,chunks:4:1,chunks:4:2 --rounds 3 --out bench/results/session5-request-concurrency.json
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from benchlib.es_node import EsNode, create_index, delete_indices

sys.path.insert(0, str(Path(__file__).resolve().parent / "methods"))  # the ceiling's own replayer, below
from ceiling import Replayer

PROJECT = Path(__file__).resolve().parent.parent
WORK = PROJECT / "bench" / "work"


@dataclass(frozen=True)
class Layout:
    order: str  # "seq" or "chunks"
    streams: int
    per_stream: int

    @classmethod
    def parse(cls, text: str) -> Layout:
        order, streams, per_stream = text.split(":")
        if order not in ("seq", "chunks"):
            raise SystemExit(f"layout {text!r}: the order is seq or chunks")
        return cls(order, int(streams), int(per_stream))

    def __str__(self) -> str:
        return f"{self.order}:{self.streams}:{self.per_stream}"

    def queues(self, manifest: list[dict]) -> list[queue.Queue]:
        """One queue per request slot; slots of one stream share its queue."""

        def filled(entries: list[dict]) -> queue.Queue:
            q: queue.Queue = queue.Queue()
            for entry in entries:
                q.put(entry)
            return q

        if self.order == "seq":
            shared = filled(manifest)
            return [shared] * (self.streams * self.per_stream)
        size = -(-len(manifest) // self.streams)
        runs = [filled(manifest[i * size : (i + 1) * size]) for i in range(self.streams)]
        return [run for run in runs for _ in range(self.per_stream)]


def replay(url: str, index: str, bodies: Path, manifest: list[dict], layout: Layout) -> None:
    """Every body, each request as the ceiling sends it (methods/ceiling.py), by the layout's slots."""
    replayer = Replayer(url, index, bodies, layout.streams * layout.per_stream)

    def slot(q: queue.Queue) -> None:
        while not replayer.failed_items:
            try:
                entry = q.get_nowait()
            except queue.Empty:
                return
            replayer.post(entry)

    threads = [threading.Thread(target=slot, args=(q,)) for q in layout.queues(manifest)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if replayer.failed_items:
        raise SystemExit(f"{layout}: {replayer.failed_items} documents in failed bodies; first: {replayer.first_error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bodies", type=Path, required=True, help="folder of methods/encode_bodies.py")
    parser.add_argument("--layouts", default="seq:4:1,chunks:4:1,chunks:4:2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--es-dir", type=Path, default=WORK / "es", help="the bench node's folder (its es.pid)")
    parser.add_argument("--port", type=int, default=9250)
    parser.add_argument("--settle-s", type=float, default=8.0, help="pause after deleting a run's index")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    node = EsNode(PROJECT, args.es_dir, args.port, "2g")
    client, pid = node.client(), node.pid()
    if pid is None:
        start = f"ES_DIR={args.es_dir} ES_PORT={args.port} ES_HEAP=2g scripts/es.sh up"
        raise SystemExit(f"no bench node: start it with {start}")
    es = psutil.Process(pid)
    manifest = json.loads((args.bodies / "manifest.json").read_text())
    rows = sum(entry["docs"] for entry in manifest)
    runs: list[dict] = []
    for round_number in range(1, args.rounds + 1):
        for layout in map(Layout.parse, args.layouts.split(",")):
            index = f"bench-concurrency-{layout.order}-{layout.streams}-{layout.per_stream}"
            create_index(client, index)
            before, started = es.cpu_times(), time.monotonic()
            replay(node.url, index, args.bodies, manifest, layout)
            wall, after = time.monotonic() - started, es.cpu_times()
            client.indices.refresh(index=index)
            count = client.count(index=index)["count"]
            delete_indices(client, index)
            run = {
                "round": round_number,
                "layout": str(layout),
                "in_flight": layout.streams * layout.per_stream,
                "wall_s": round(wall, 2),
                "es_cpu_s": round(after.user + after.system - before.user - before.system, 1),
                "count": count,
                "load_1min": round(os.getloadavg()[0], 2),
            }
            if count != rows:
                raise SystemExit(f"{layout}: {count} documents, expected {rows}")
            runs.append(run)
            print(json.dumps(run), flush=True)
            time.sleep(args.settle_s)
    result = {"bodies": len(manifest), "rows": rows, "es": node.describe(), "runs": runs}
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
