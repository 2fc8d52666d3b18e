"""The ceiling's input: the hour's documents pre-encoded as `_bulk` bodies on disk.

Exactly the bodies flows_pipeline sends: the same chunk plan (plan_chunks) and the same encoder
and cut (chunk_loading.chunk_bodies: bulk_encoding.encode_lines/assemble_bodies, 5 MiB / 10,000
docs), one file per body with a manifest; and the bodies' documents alone in one NDJSON file, the
peers' input. Run once per size, before (and outside) the timed
ceiling runs; its own rate is the encoder's throughput with no Elasticsearch in the way.

    python bench/methods/encode_bodies.py --table FILE --out DIR
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import Stopwatch, report

from flows_pipeline.es.chunk_loading import BulkLimits, ChunkTask, chunk_bodies
from flows_pipeline.es.chunk_plan import plan_chunks
from flows_pipeline.es.index_lifecycle import LoadAttempt
from flows_pipeline.orchestration.resources import FlowsElasticsearch

MANIFEST = "manifest.json"
DOCUMENTS = "documents.ndjson"  # the bodies' source lines alone: the peers' input (espipe_loader.py)
# the documents carry an attempt token and attempt-prefixed ids like the pipeline's (same bytes)
CEILING_ATTEMPT = LoadAttempt(
    alias="ceiling", bucket="ceiling", token="2021.10.28-00-ceiling0-1635379200000", id_prefix="ceiling0-2800-"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    defaults = FlowsElasticsearch()
    limits = BulkLimits(defaults.bulk_max_bytes, defaults.bulk_max_docs, defaults.max_in_flight)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bodies: list[dict] = []
    write_s = 0.0
    clock = Stopwatch()
    with (out / DOCUMENTS).open("wb") as documents:
        for chunk in plan_chunks(Path(args.table), 4, defaults.max_row_groups_per_chunk):
            for body in chunk_bodies(ChunkTask(CEILING_ATTEMPT, chunk), limits):
                started = time.monotonic()
                name = f"body-{len(bodies):06d}.ndjson"
                (out / name).write_bytes(body.payload)
                documents.writelines(body.payload.splitlines(keepends=True)[1::2])  # action, source, ...
                write_s += time.monotonic() - started
                bodies.append(
                    {"file": name, "docs": body.docs, "bytes": len(body.payload), "first_row": body.first_row}
                )
    total_s = clock.seconds()
    (out / MANIFEST).write_text(json.dumps(bodies))
    docs = sum(b["docs"] for b in bodies)
    report(
        {
            "docs": docs,
            "bodies": len(bodies),
            "bytes": sum(b["bytes"] for b in bodies),
            "encode_s": total_s - write_s,
            "write_s": write_s,
            "encode_docs_per_s": docs / (total_s - write_s),
            "max_body_bytes": max(b["bytes"] for b in bodies),
        }
    )


if __name__ == "__main__":
    main()
