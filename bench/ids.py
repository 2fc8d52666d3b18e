#!/usr/bin/env python3
"""Explicit document ids against ids Elasticsearch generates, on the ceiling's replay (issue 3, "worth measuring").

flows_pipeline gives every document `_id` = its row number, so that a retried request or chunk
replaces documents instead of duplicating them. Elasticsearch's tuning guide says auto-generated
ids index faster (no lookup of the id before writing). This measures what that costs here: the
same pipeline bodies replayed by `methods/ceiling.py` (no client encoding), once as they are and
once with every action line stripped of its id, alternating, into fresh indices on the benchmark's
node. Needs the node (`ES_DIR=bench/work/es ES_PORT=9250 ES_HEAP=2g scripts/es.sh up`) and a
generated table (a `bench/run.py` run of that size).

    .venv/bin/python bench/ids.py --rows 1000000 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from elasticsearch import Elasticsearch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from benchlib.es_node import count_documents, create_index  # noqa: E402
from benchlib.methods import without_ids  # noqa: E402


def replay(url: str, index: str, bodies: Path, concurrency: int) -> float:
    started = time.monotonic()
    command = [sys.executable, str(BENCH / "methods" / "ceiling.py"), "--url", url, "--index", index]
    subprocess.run(
        [*command, "--bodies", str(bodies), "--concurrency", str(concurrency)], check=True, capture_output=True
    )
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--url", default="http://127.0.0.1:9250")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "ids.json")
    args = parser.parse_args()

    table = BENCH / "work" / "data" / f"rows-{args.rows}" / "flow_table" / "2021-10-28" / "03.parquet"
    work = BENCH / "work" / "ids" / f"rows-{args.rows}"
    explicit, automatic = work / "explicit", work / "automatic"
    encode = [
        sys.executable,
        str(BENCH / "methods" / "encode_bodies.py"),
        "--table",
        str(table),
        "--out",
        str(explicit),
    ]
    subprocess.run(encode, check=True, capture_output=True)
    without_ids(explicit, automatic)

    client = Elasticsearch(args.url, request_timeout=600)
    create_index(client, "bench-ids-warmup")  # unrecorded: a cold JVM made the first replay ~40% slower
    replay(args.url, "bench-ids-warmup", explicit, args.concurrency)
    client.indices.delete(index="bench-ids-warmup")
    runs = []
    for round_ in range(1, args.rounds + 1):
        for kind, bodies in (("explicit ids", explicit), ("auto ids", automatic)):
            index = f"bench-ids-{kind.split()[0]}-{round_}"
            create_index(client, index)
            seconds = replay(args.url, index, bodies, args.concurrency)
            docs = count_documents(client, index)
            client.indices.delete(index=index)
            runs.append(
                {"ids": kind, "round": round_, "wall_s": round(seconds, 2), "docs_per_s": round(docs / seconds)}
            )
            print(f"{kind:12s} round {round_}: {seconds:6.2f} s, {docs / seconds:8.0f} docs/s, _count {docs}")
            if docs != args.rows:
                raise SystemExit(f"{index}: _count {docs}, expected {args.rows}")
            time.sleep(5)  # let merges of the deleted index settle
    best = {kind: max(r["docs_per_s"] for r in runs if r["ids"] == kind) for kind in ("explicit ids", "auto ids")}
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/ids.py", *sys.argv[1:]]),
        "rows": args.rows,
        "concurrency": args.concurrency,
        "runs": runs,
        "explicit_over_auto": round(best["explicit ids"] / best["auto ids"], 3),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"explicit / auto ids (best rounds): {result['explicit_over_auto']}x; wrote {args.out}")


if __name__ == "__main__":
    main()
