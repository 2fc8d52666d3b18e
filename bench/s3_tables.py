#!/usr/bin/env python3
"""Tables on local disk against tables on S3 (s3proxy): one synthetic hour, `dagster asset materialize`
of every asset, the same Elasticsearch node, alternating rounds in one invocation.

    .venv/bin/python bench/s3_tables.py --rows 100000 --rounds 2 --es-url http://127.0.0.1:9210

s3proxy is started for the measurement by scripts/s3proxy.sh (its own folder bench/work/s3, port
--s3-port) and stopped after it. Each run gets a fresh DAGSTER_HOME (the local instance's
dagster.yaml), its own index prefix and its own storage root; its step times are read from its event
log (STEP_START -> STEP_SUCCESS). Prints the Markdown of bench/RESULTS.md's "Tables on S3" section
and writes the raw figures to --out (bench/results/s3-tables-N.json are the committed ones).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))  # the project root: flows_pipeline_tests (its s3proxy helpers)

from flows_pipeline_tests.s3 import s3_exports, s3_sh  # noqa: E402

WORK = PROJECT / "bench" / "work" / "s3-tables"
PARTITION = "2021-10-28-03:00"


def s3proxy(port: int, *args: str) -> str:
    return s3_sh(WORK / "s3", port, *args)


def step_seconds(home: Path) -> dict[str, float]:
    """step key -> STEP_START to STEP_SUCCESS, s, of the one run in `home`."""
    with DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs(limit=1)
        starts, seconds = {}, {}
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type == DagsterEventType.STEP_START:
                starts[event.step_key] = entry.timestamp
            elif event.event_type == DagsterEventType.STEP_SUCCESS:
                seconds[event.step_key] = round(entry.timestamp - starts[event.step_key], 3)
    return seconds


def materialize(kind: str, rows: int, es_url: str, s3_env: dict[str, str]) -> dict:
    run_dir = WORK / f"{kind}-{uuid.uuid4().hex[:8]}"
    home = run_dir / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(PROJECT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ES_URL": es_url,
        "FLOWS_SOURCE": "synthetic",
        "FLOWS_SYNTHETIC_ROWS": str(rows),
        "FLOWS_INDEX_PREFIX": f"bench-s3tables-{run_dir.name}",
        "FLOWS_STORAGE_ROOT": str(run_dir / "tables"),
    }
    if kind == "s3":
        env |= s3_env | {"FLOWS_STORAGE_ROOT": f"{s3_env['FLOWS_STORAGE_ROOT']}/{run_dir.name}"}
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "flows_pipeline.definitions"]
    command += ["--select", "*", "--partition", PARTITION]
    started = time.monotonic()
    done = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - started
    if done.returncode:
        raise SystemExit(f"{kind} run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    count = subprocess.run(
        ["curl", "-fsS", f"{es_url}/{env['FLOWS_INDEX_PREFIX']}/_count"], capture_output=True, text=True, check=True
    )
    subprocess.run(["curl", "-fsS", "-X", "DELETE", f"{es_url}/{env['FLOWS_INDEX_PREFIX']}*"], capture_output=True)
    return {
        "kind": kind,
        "wall_s": round(wall, 2),
        "steps": step_seconds(home),
        "documents": json.loads(count.stdout)["count"],
    }


def _summarized(steps: dict[str, float]) -> dict[str, float]:
    """Chunk steps run side by side: their slowest is the hour's; the rest as they are."""
    chunks = [s for key, s in steps.items() if key.startswith("flow_index.index_chunk[")]
    out = {key: s for key, s in steps.items() if not key.startswith("flow_index.index_chunk[")}
    out[f"flow_index.index_chunk (slowest of {len(chunks)})"] = max(chunks, default=0.0)
    return out


def markdown(runs: list[dict]) -> str:
    order = ["raw_flows", "flow_table", "flow_index.plan", "flow_index.index_chunk", "flow_index.publish"]
    order.append("flow_summary")
    lines = ["| round | step | local s | S3 s | S3 / local |", "|---|---|---:|---:|---:|"]
    for round_no, (local, s3) in enumerate(zip(runs[::2], runs[1::2], strict=True), start=1):
        a, b = _summarized(local["steps"]), _summarized(s3["steps"])
        for key in sorted(a, key=lambda k: next(i for i, name in enumerate(order) if k.startswith(name))):
            lines.append(f"| {round_no} | {key} | {a[key]:.2f} | {b[key]:.2f} | {b[key] / a[key]:.2f} |")
        lines.append(
            f"| {round_no} | **whole command** (wall) | **{local['wall_s']:.2f}** | **{s3['wall_s']:.2f}** | "
            f"**{s3['wall_s'] / local['wall_s']:.2f}** |"
        )
    medians = {kind: statistics.median(r["wall_s"] for r in runs if r["kind"] == kind) for kind in ("local", "s3")}
    lines.append(
        f"| median | **whole command** (wall) | **{medians['local']:.2f}** | **{medians['s3']:.2f}** | "
        f"**{medians['s3'] / medians['local']:.2f}** |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--es-url", default=f"http://127.0.0.1:{os.environ.get('ES_PORT', '9200')}")
    parser.add_argument("--s3-port", type=int, default=9310)
    parser.add_argument("--out", type=Path, default=PROJECT / "bench" / "work" / "s3-tables.json")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    s3proxy(args.s3_port, "up")
    try:
        s3_env = s3_exports(WORK / "s3", args.s3_port)
        runs = [
            materialize(kind, args.rows, args.es_url, s3_env) for _ in range(args.rounds) for kind in ("local", "s3")
        ]
    finally:
        s3proxy(args.s3_port, "stop")
    args.out.write_text(json.dumps({"rows": args.rows, "es_url": args.es_url, "runs": runs}, indent=2) + "\n")
    print(markdown(runs))


if __name__ == "__main__":
    main()
