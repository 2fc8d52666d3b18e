#!/usr/bin/env python3
"""One way of reading an hour's nfcapd files into rows, timed alone (no Parquet, no Dagster).

Issue 22's options side by side, each run by the harness as its own measured process tree:

- `native`: the pipeline's reader of nfdump's file layout (flows_pipeline/sources/nffile.py);
- `nfdump_json`: `nfdump -o json` on a pipe, a block at a time parsed by Arrow's JSON reader
  and mapped to the raw schema (flows_pipeline/sources/nfcapd.py, the native reader's fallback);
- `nfdump_json_2proc`: the same, one file per process in a pool of 2 (this machine's cores; under
  `bench/run.py --pin` both share the harness's one core, which makes this line meaningless);
- `nfdump_csv_arrow`: `nfdump -q -o csv` into Arrow's multithreaded streaming CSV reader, parsed
  only (not mapped to the raw schema: a lower bound of that option's cost; nfdump 1.7.1's csv
  prints times to the second, so it could not be the raw table's source anyway).

    nfcapd_readers.py --files bench/work/nfcapd/flows-1000000/files --reader native
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow.csv as pa_csv
from _common import Stopwatch, report

from flows_pipeline.sources.nfcapd import nfcapd_record_blocks, nfdump_batch, nfdump_env
from flows_pipeline.sources.nffile import nffile_flow_batches

READERS = ("native", "nfdump_json", "nfdump_json_2proc", "nfdump_csv_arrow")


def native_rows(path: Path) -> int:
    return sum(batch.num_rows for batch in nffile_flow_batches(path))


def nfdump_json_rows(path: Path) -> int:
    rows = 0
    for texts in nfcapd_record_blocks(path):
        batch = nfdump_batch(texts, str(path), rows + 1)
        if batch is None:
            raise RuntimeError(f"{path}: a block left Arrow's path (the bench's files should not)")
        rows += batch.num_rows
    return rows


def nfdump_csv_rows(files: Path) -> int:
    # -q: no header line and no closing summary, only flows
    argv = ["nfdump", "-R", str(files), "-q", "-o", "csv"]
    nfdump = subprocess.Popen(argv, env=nfdump_env(), stdout=subprocess.PIPE)
    assert nfdump.stdout is not None
    options = pa_csv.ReadOptions(use_threads=True, block_size=1 << 22, autogenerate_column_names=True)
    rows = sum(batch.num_rows for batch in pa_csv.open_csv(nfdump.stdout, read_options=options))
    if nfdump.wait():
        raise RuntimeError(f"nfdump -o csv exited {nfdump.returncode}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=Path, required=True, help="the hour's nfcapd files (any layout)")
    parser.add_argument("--reader", choices=READERS, required=True)
    args = parser.parse_args()
    files = sorted(p for p in args.files.rglob("nfcapd.2*") if p.is_file())
    clock = Stopwatch()
    if args.reader == "native":
        rows = sum(native_rows(path) for path in files)
    elif args.reader == "nfdump_json":
        rows = sum(nfdump_json_rows(path) for path in files)
    elif args.reader == "nfdump_json_2proc":
        with ProcessPoolExecutor(2) as pool:
            rows = sum(pool.map(nfdump_json_rows, files))
    else:
        rows = nfdump_csv_rows(args.files)
    report({"reader": args.reader, "files": len(files), "rows": rows, "read_s": round(clock.seconds(), 3)})


if __name__ == "__main__":
    sys.exit(main())
