"""Issue 23's fixed cost per hour: the wall of a small hour by CLI and through the daemon's run launcher.

Run by hand, not a test, against a node (`--url`). Each round materializes one synthetic hour of
--rows flows with every variant, one after the other, in a fresh DAGSTER_HOME (a copy of
dagster_home/dagster.yaml) and a fresh index prefix, so the variants share the machine's state:
the ratios are taken round by round. The instance's storages are created before each timed run, as
a user's DAGSTER_HOME exists before its hours. Variants:

- early (as shipped): FLOWS_EARLY_STEP_SERVER=true, the steps' forkserver starts as the run's
  process imports the project (orchestration/step_server.py);
- late: =false, it starts at the first step, Dagster's way;
- collect (cli only): early, but the process exits with the interpreter's last full collection,
  as before orchestration/interpreter_exit.py (its exit handler unregistered).

Within a round each variant goes first in turn. The CLI's wall no longer includes creating the
instance's storages (bench/RESULTS.md's first table of this bench, before it, did).

Paths:

- cli: `dagster asset materialize --select '*' --partition H`, wall from exec to exit;
- launcher: `dagster job launch` puts the run on the queue, the daemon (`dagster-daemon run`, one
  per variant and round, started before) dequeues it and its DefaultRunLauncher starts
  `dagster api execute_run`; wall from the run's RUN_STARTING event (the launch) to RUN_SUCCESS,
  which leaves out the daemon's dequeue interval (a poll, not the hour's cost).

    .venv/bin/python bench/fixed_cost.py --url http://127.0.0.1:9200 --rows 10000 --rounds 4 \
        --out bench/results/fixed-cost-10k.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOURS = [f"2021-10-28-{h:02d}:00" for h in range(24)]


def _env(home: Path, args, prefix: str, early: bool) -> dict:
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "FLOWS_STORAGE_ROOT": str(home / "tables"),
        "FLOWS_INDEX_PREFIX": prefix,
        "FLOWS_SOURCE": "synthetic",
        "FLOWS_SYNTHETIC_ROWS": str(args.rows),
        "ES_URL": args.url,
        "FLOWS_INDEX_REPLICAS": "0",
        "FLOWS_EARLY_STEP_SERVER": "true" if early else "false",
    }


def _events(home: Path) -> dict[str, float]:
    """The first timestamp of each event type of the instance's only run."""
    with DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_runs()[0]
        if run.status != DagsterRunStatus.SUCCESS:
            raise RuntimeError(f"run {run.run_id} ended {run.status}: see {home}")
        seen: dict[str, float] = {}
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is not None and event.event_type_value not in seen:
                seen[event.event_type_value] = entry.timestamp
        return seen


# `dagster` itself, with the exit handler of orchestration/interpreter_exit.py taken out before the exit
COLLECT_AT_EXIT = """import atexit, gc, sys
from dagster._cli import main
sys.argv[0] = "dagster"
try:
    main()
finally:
    atexit.unregister(gc.freeze)
"""
VARIANTS = {"early": (True, False), "late": (False, False), "collect": (True, True)}  # (early, collect at exit)


def by_cli(home: Path, env: dict, hour: str, collect_at_exit: bool = False) -> dict:
    with DagsterInstance.from_config(str(home)):  # the storages exist, as in a user's DAGSTER_HOME
        pass
    dagster = [sys.executable, "-c", COLLECT_AT_EXIT] if collect_at_exit else [str(BIN / "dagster")]
    started = time.time()
    subprocess.run(
        [
            *dagster,
            "asset",
            "materialize",
            "-m",
            "flows_pipeline.definitions",
            "--select",
            "*",
            "--partition",
            hour,
        ],
        env=env,
        cwd=PROJECT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    wall = time.time() - started
    seen = _events(home)
    return {
        "wall_s": round(wall, 3),
        "to_run_start_s": round(seen[DagsterEventType.RUN_START.value] - started, 3),
        "first_step_wait_s": _first_step_wait(seen),
    }


def _first_step_wait(seen: dict[str, float]) -> float:
    """From the executor's launch of the first step to its start: the forkserver's preload left to wait for."""
    return round(seen[DagsterEventType.STEP_START.value] - seen[DagsterEventType.STEP_WORKER_STARTING.value], 3)


def by_launcher(home: Path, env: dict, hour: str, collect_at_exit: bool = False) -> dict:
    # create the SQLite storages first: the daemon and `job launch` racing to do it leave two alembic heads
    with DagsterInstance.from_config(str(home)):
        pass
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-m", "flows_pipeline.definitions"],
        env=env,
        cwd=PROJECT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        launched = subprocess.run(
            [
                str(BIN / "dagster"),
                "job",
                "launch",
                "-m",
                "flows_pipeline.definitions",
                "-j",
                "flows_hourly_job",
                "--tags",
                json.dumps({"dagster/partition": hour}),
            ],
            env=env,
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if launched.returncode != 0:  # seen once in a while here: say why
            raise RuntimeError(f"dagster job launch exited {launched.returncode}: {launched.stderr[-6000:]}")
        deadline = time.time() + 300
        while time.time() < deadline:
            with DagsterInstance.from_config(str(home)) as instance:
                run = instance.get_runs()[0]
                if run.is_finished:
                    break
            time.sleep(0.5)
        seen = _events(home)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
    launched, done = seen[DagsterEventType.RUN_STARTING.value], seen[DagsterEventType.RUN_SUCCESS.value]
    return {
        "wall_s": round(done - launched, 3),
        "queued_to_success_s": round(done - seen["PIPELINE_ENQUEUED"], 3),
        "first_step_wait_s": _first_step_wait(seen),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--paths", default="cli,launcher")
    parser.add_argument("--variants", default="early,late,collect", help="of: " + ", ".join(VARIANTS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    paths = {"cli": by_cli, "launcher": by_launcher}
    asked = args.variants.split(",")
    if "early" not in asked or not set(asked) <= set(VARIANTS):
        parser.error(f"--variants: of {', '.join(VARIANTS)}, with early (the shipped one, every ratio's numerator)")
    doc: dict = {"rows": args.rows, "url": args.url, "load_before": os.getloadavg(), "commit": _commit(), "rounds": []}
    prefix = f"fixedcost-{uuid.uuid4().hex[:6]}"
    try:
        for round_number in range(args.rounds):
            for path in args.paths.split(","):
                variants = _variants(args, path)
                shift = round_number % len(variants)  # each variant first in turn: no fixed order effect
                for variant in variants[shift:] + variants[:shift]:
                    early, collect = VARIANTS[variant]
                    home = Path(tempfile.mkdtemp(prefix="fixedcost-"))
                    shutil.copy(PROJECT / "dagster_home" / "dagster.yaml", home)
                    hour = HOURS[round_number % 24]
                    row = {"round": round_number + 1, "path": path, "variant": variant, "early_step_server": early,
                           "hour": hour}  # fmt: skip
                    row |= paths[path](home, _env(home, args, prefix, early), hour, collect_at_exit=collect)
                    doc["rounds"].append(row)
                    print(json.dumps(row), flush=True)
                    shutil.rmtree(home, ignore_errors=True)
    finally:
        request = urllib.request.Request(f"{args.url}/{prefix}*?expand_wildcards=all", method="DELETE")
        urllib.request.urlopen(request, timeout=60).close()
    doc["load_after"] = os.getloadavg()
    if args.out:  # the rounds first: what follows only summarizes them
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    doc["summary"] = {}
    for path in args.paths.split(","):
        walls = {v: [r["wall_s"] for r in doc["rounds"] if r["path"] == path and r["variant"] == v] for v in VARIANTS}
        summary = {f"median_wall_{v}_s": statistics.median(w) for v, w in walls.items() if w}
        for other in (v for v in _variants(args, path) if v != "early"):  # the shipped one against each other
            ratios = [a / b for a, b in zip(walls["early"], walls[other], strict=True)]
            summary[f"early_over_{other}_by_round"] = [round(r, 3) for r in ratios]
            summary[f"early_over_{other}_median"] = round(statistics.median(ratios), 3)
        doc["summary"][path] = summary
    print(json.dumps(doc["summary"], indent=1))
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")


def _variants(args, path: str) -> list[str]:
    """The variants a path runs: `collect` changes only the exit, which the launcher's wall leaves out."""
    return [v for v in args.variants.split(",") if not (v == "collect" and path == "launcher")]


def _commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True
    ).stdout.strip()


if __name__ == "__main__":
    main()
