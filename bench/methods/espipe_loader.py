#!/usr/bin/env python3
"""A peer a user would pick to push NDJSON fast: espipe (crates.io), on the hour's finished documents.

espipe 0.7.0 is built from crates.io by `bench/peers.sh` into bench/work/peers/bin. It reads the
documents the pipeline would index (encode_bodies.py's documents.ndjson: the source lines of the
pipeline's own bodies, so the same bytes a document; espipe writes its own action lines, without
ids, read from its stdin) and sends bulk requests of --batch-size documents, --max-requests at once, uncompressed as
the pipeline's are (`-z`). This wrapper only times it and reports, as every method does.

(esbulk, the Go peer named by issue 23, cannot be built here: the Go module proxy this machine
reaches answers 403 "This module version is not available" for github.com/miku/esbulk at every
version tried, v0.6.0 to v0.7.31, and for its @v/list.)

    espipe_loader.py --espipe bench/work/peers/bin/espipe --documents DIR/documents.ndjson \
        --url http://127.0.0.1:9250 --index NAME --concurrency 4 --batch-size 10000
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from _common import Stopwatch, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--espipe", required=True)
    parser.add_argument("--documents", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--concurrency", type=int, required=True, help="bulk requests in flight (--max-requests)")
    parser.add_argument("--batch-size", type=int, default=10_000, help="documents a request: the pipeline's cap")
    args = parser.parse_args()
    argv = [
        args.espipe, "-z", "--quiet", "--batch-size", str(args.batch_size), "--max-requests", str(args.concurrency),
        "-", f"{args.url}/{args.index}",
    ]  # fmt: skip
    clock = Stopwatch()
    # on stdin: from a named file espipe adds an `origin` object to every document (the file's name),
    # which the flow mapping (dynamic: strict) refuses; espipe still exits 0, so the harness's count tells
    with open(args.documents, "rb") as documents:
        done = subprocess.run(argv, stdin=documents, capture_output=True, text=True)
    load_s = clock.seconds()
    if done.returncode:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"espipe exited {done.returncode}")
    report({"load_s": load_s, "espipe_output": (done.stdout + done.stderr)[-500:]})


if __name__ == "__main__":
    main()
