"""Issue 23's 24-hour backfill: hours per minute through the run queue against sequential CLI runs.

Run by hand, not a test, against a node (`--url`). The same --hours synthetic hours of --rows flows
each are loaded twice, one way after the other, in one invocation, each way in a fresh DAGSTER_HOME
(a copy of dagster_home/dagster.yaml: the README's pool limits, `flows_es_bulk` 2 slots, 4 runs in
progress) and a fresh index prefix:

- sequential: `dagster asset materialize --select '*' --partition H` for each hour, one after the
  other; timed from the first exec to the last exit;
- queue: `dagster job backfill --from H0 --to Hn` with a daemon (`dagster-daemon run`) started first;
  the backfill daemon submits one run per hour to the queue, the run coordinator dequeues at most
  4 at once and the run launcher starts them; timed from the backfill command to the last run's
  RUN_SUCCESS. Every hour's alias is then counted: each must hold exactly --rows.

    .venv/bin/python bench/backfill_rate.py --url http://127.0.0.1:9200 --hours 24 --rows 100000 \
        --out bench/results/backfill-24h.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus
from fixed_cost import BIN, PROJECT, _commit, _env

from flows_pipeline.hour import hour_of


def _fresh_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="backfillrate-"))
    shutil.copy(PROJECT / "dagster_home" / "dagster.yaml", home)
    with DagsterInstance.from_config(str(home)):  # storages created once, before two processes race to
        pass
    return home


def sequential(home: Path, env: dict, hours: list[str]) -> float:
    started = time.time()
    for hour in hours:
        subprocess.run(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "flows_pipeline.definitions", "--select", "*",
             "--partition", hour],
            env=env, cwd=PROJECT, check=True, capture_output=True, timeout=900,
        )  # fmt: skip
    return time.time() - started


def through_the_queue(home: Path, env: dict, hours: list[str]) -> float:
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-m", "flows_pipeline.definitions"],
        env=env, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(5)  # the daemon's first heartbeat: the backfill is not waiting on a daemon still importing
        started = time.time()
        subprocess.run(
            [str(BIN / "dagster"), "job", "backfill", "-m", "flows_pipeline.definitions", "-j", "flows_hourly_job",
             "--from", hours[0], "--to", hours[-1], "--noprompt"],
            env=env, cwd=PROJECT, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        deadline = time.time() + 3600
        while time.time() < deadline:
            with DagsterInstance.from_config(str(home)) as instance:
                runs = instance.get_runs()
                done = [r for r in runs if r.is_finished]
                if len(done) >= len(hours) and len(done) == len(runs):
                    failed = [r.run_id for r in runs if r.status != DagsterRunStatus.SUCCESS]
                    if failed:
                        raise RuntimeError(f"runs that did not succeed: {failed} (see {home})")
                    ended = max(instance.get_run_record_by_id(r.run_id).end_time for r in runs)
                    return ended - started
            time.sleep(1)
        raise RuntimeError("the backfill's runs did not all end within an hour")
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)


def _count(url: str, alias: str) -> int:
    with urllib.request.urlopen(f"{url}/{alias}/_count", timeout=60) as response:
        return json.load(response)["count"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    hours = [f"2021-10-{28 + h // 24}-{h % 24:02d}:00" for h in range(args.hours)]
    doc: dict = {"rows": args.rows, "hours": len(hours), "commit": _commit(), "load_before": os.getloadavg()}
    for way, load in (("sequential", sequential), ("queue", through_the_queue)):
        prefix = f"backfillrate-{way}-{uuid.uuid4().hex[:6]}"
        home = _fresh_home()
        try:
            wall = load(home, _env(home, args, prefix, early=True), hours)
            counts = {h: _count(args.url, f"{prefix}-{hour_of(h).label}") for h in hours}
            wrong = {h: n for h, n in counts.items() if n != args.rows}
            doc[way] = {"wall_s": round(wall, 1), "hours_per_min": round(len(hours) / wall * 60, 2), "not_exact": wrong}
            print(way, json.dumps(doc[way]), flush=True)
        finally:
            request = urllib.request.Request(f"{args.url}/{prefix}*?expand_wildcards=all", method="DELETE")
            urllib.request.urlopen(request, timeout=120).close()
            shutil.rmtree(home, ignore_errors=True)
    doc["queue_over_sequential_rate"] = round(doc["queue"]["hours_per_min"] / doc["sequential"]["hours_per_min"], 3)
    doc["load_after"] = os.getloadavg()
    print(json.dumps(doc, indent=1))
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
