#!/usr/bin/env python3
"""What running beyond one machine costs an hour (issue 21): the single-machine layout (SQLite instance,
tables on local disk) against the production instance on PostgreSQL (deploy/dagster.yaml) and against
tables on S3 (s3proxy). One synthetic hour, `dagster asset materialize` of every asset, the same
Elasticsearch node, rounds of local, postgres, s3 in one invocation.

    .venv/bin/python bench/scale_out_overhead.py --rows 100000 --rounds 3 --kinds local,postgres,s3 \
        --es-url http://127.0.0.1:9210

PostgreSQL (scripts/postgres.sh, cluster bench/work/scale-out/pg on --pg-port) and s3proxy
(scripts/s3proxy.sh, bench/work/scale-out/s3 on --s3-port) are started for the measurement and stopped
after it. Each run gets a fresh DAGSTER_HOME (a fresh database for postgres), its own index prefix and
its own storage root; its step times are read from its event log (STEP_START -> STEP_SUCCESS). Prints
the Markdown of bench/RESULTS.md's "Beyond one machine" section and writes the raw figures to --out
(bench/results/scale-out-*.json are the committed ones; s3-tables-*.json came from this script's first
version, bench/s3_tables.py, local against s3 only).
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

from flows_pipeline_tests.postgres import OwnPostgres, production_instance  # noqa: E402
from flows_pipeline_tests.s3 import s3_exports, s3_sh  # noqa: E402

WORK = PROJECT / "bench" / "work" / "scale-out"
KINDS = ("local", "postgres", "s3")
PARTITION = "2021-10-28-03:00"


def s3proxy(port: int, *args: str) -> str:
    return s3_sh(WORK / "s3", port, *args)


def step_seconds(home: Path, env: dict[str, str]) -> dict[str, float]:
    """step key -> STEP_START to STEP_SUCCESS, s, of the one run in `home` (`env`: its DAGSTER_PG_*)."""
    with production_instance(home, env) if env else DagsterInstance.from_config(str(home)) as instance:
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


def materialize(kind: str, rows: int, es_url: str, s3_env: dict[str, str], postgres: OwnPostgres | None) -> dict:
    run_dir = WORK / f"{kind}-{uuid.uuid4().hex[:8]}"
    home = run_dir / "dagster_home"
    home.mkdir(parents=True)
    pg_env = {}
    if kind == "postgres":
        pg_env = postgres.dagster_home(home)  # deploy/dagster.yaml, a fresh database
    else:
        shutil.copy(PROJECT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ES_URL": es_url,
        "FLOWS_SOURCE": "synthetic",
        "FLOWS_SYNTHETIC_ROWS": str(rows),
        "FLOWS_INDEX_PREFIX": f"bench-scaleout-{run_dir.name}",
        "FLOWS_STORAGE_ROOT": str(run_dir / "tables"),
        **pg_env,
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
        "steps": step_seconds(home, pg_env),
        "documents": json.loads(count.stdout)["count"],
    }


def _summarized(steps: dict[str, float]) -> dict[str, float]:
    """Chunk steps run side by side: their slowest is the hour's; the rest as they are."""
    chunks = [s for key, s in steps.items() if key.startswith("flow_index.index_chunk[")]
    out = {key: s for key, s in steps.items() if not key.startswith("flow_index.index_chunk[")}
    out[f"flow_index.index_chunk (slowest of {len(chunks)})"] = max(chunks, default=0.0)
    return out


def markdown(runs: list[dict], kinds: list[str]) -> str:
    """Per round, each step's seconds by kind and each kind / local; then the median wall by kind."""
    order = ["raw_flows", "flow_table", "flow_index.plan", "flow_index.index_chunk", "flow_index.publish"]
    order.append("flow_summary")
    others = [kind for kind in kinds if kind != "local"]
    head = "| round | step | " + " | ".join(f"{kind} s" for kind in kinds)
    head += "".join(f" | {kind} / local" for kind in others) + " |"
    lines = [head, "|---|---|" + "---:|" * (len(kinds) + len(others))]

    def row(label: str, values: dict[str, float], bold: bool = False) -> str:
        mark = "**" if bold else ""
        cells = [f"{mark}{values[kind]:.2f}{mark}" for kind in kinds]
        cells += [f"{mark}{values[kind] / values['local']:.2f}{mark}" for kind in others]
        return f"| {label} | " + " | ".join(cells) + " |"

    for round_no in range(len(runs) // len(kinds)):
        by_kind = {run["kind"]: run for run in runs[round_no * len(kinds) : (round_no + 1) * len(kinds)]}
        steps = {kind: _summarized(by_kind[kind]["steps"]) for kind in kinds}
        for key in sorted(steps["local"], key=lambda k: next(i for i, name in enumerate(order) if k.startswith(name))):
            lines.append(row(f"{round_no + 1} | {key}", {kind: steps[kind][key] for kind in kinds}))
        lines.append(row(f"{round_no + 1} | **whole command** (wall)", {k: by_kind[k]["wall_s"] for k in kinds}, True))
    medians = {kind: statistics.median(r["wall_s"] for r in runs if r["kind"] == kind) for kind in kinds}
    lines.append(row("median | **whole command** (wall)", medians, True))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--es-url", default=f"http://127.0.0.1:{os.environ.get('ES_PORT', '9200')}")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated, of: " + ", ".join(KINDS))
    parser.add_argument("--s3-port", type=int, default=9310)
    parser.add_argument("--pg-port", type=int, default=5439)
    parser.add_argument("--out", type=Path, default=WORK / "scale-out.json")
    args = parser.parse_args()
    kinds = ["local"] + [kind for kind in args.kinds.split(",") if kind != "local"]
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown kinds {sorted(unknown)}; of: {', '.join(KINDS)}")
    WORK.mkdir(parents=True, exist_ok=True)
    postgres = OwnPostgres.up(WORK / "pg", args.pg_port) if "postgres" in kinds else None
    if "s3" in kinds:
        s3proxy(args.s3_port, "up")
    try:
        s3_env = s3_exports(WORK / "s3", args.s3_port) if "s3" in kinds else {}
        runs = [
            materialize(kind, args.rows, args.es_url, s3_env, postgres) for _ in range(args.rounds) for kind in kinds
        ]
    finally:
        if "s3" in kinds:
            s3proxy(args.s3_port, "stop")
        if postgres:
            postgres.stop()
    args.out.write_text(
        json.dumps({"rows": args.rows, "es_url": args.es_url, "kinds": kinds, "runs": runs}, indent=2) + "\n"
    )
    print(markdown(runs, kinds))


if __name__ == "__main__":
    main()
