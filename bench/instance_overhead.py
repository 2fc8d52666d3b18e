"""Issue 21's overhead of the PostgreSQL instance per hour: the same hour's CLI wall on SQLite and on Postgres.

Run by hand, not a test, against a node (`--url`), with the project's own PostgreSQL cluster for the
bench (`PG_DIR=bench/work/pg PG_PORT=5439 scripts/postgres.sh up`, then `... createdb flows_bench`).
Each round materializes one synthetic hour of --rows flows by `dagster asset materialize --select '*'`
twice, one instance after the other: the shipped SQLite instance (dagster_home/dagster.yaml in a fresh
DAGSTER_HOME) and the production one (deploy/dagster.yaml, on that database, whose runs accumulate
as a deployment's do). The ratio postgres/sqlite is taken round by round.

    PG_DIR=bench/work/pg PG_PORT=5439 .venv/bin/python bench/instance_overhead.py --rows 100000 --rounds 4 \
        --out bench/results/instance-overhead-100k.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import urllib.request
import uuid
from pathlib import Path

from fixed_cost import PROJECT, _commit, _env, by_cli

HOURS = [f"2021-10-28-{h:02d}:00" for h in range(24)]


def _postgres_env(database: str) -> dict[str, str]:
    """The DAGSTER_PG_* variables of the bench's cluster (PG_DIR, PG_PORT), for `database`."""
    exports = subprocess.run(
        [str(PROJECT / "scripts" / "postgres.sh"), "env"], capture_output=True, text=True, check=True,
        env={**os.environ, "DAGSTER_PG_DB": database},
    ).stdout  # fmt: skip
    pairs = (line.removeprefix("export ").split("=", 1) for line in exports.splitlines() if "=" in line)
    return {name: value.strip("'\"") for name, value in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--database", default="flows_bench")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.update(_postgres_env(args.database))  # read by deploy/dagster.yaml, here and in the CLI
    configs = {"sqlite": PROJECT / "dagster_home" / "dagster.yaml", "postgres": PROJECT / "deploy" / "dagster.yaml"}
    doc: dict = {"rows": args.rows, "commit": _commit(), "load_before": os.getloadavg(), "rounds": []}
    prefix = f"instancebench-{uuid.uuid4().hex[:6]}"
    try:
        for round_number in range(args.rounds):
            for instance, config in configs.items():
                home = Path(tempfile.mkdtemp(prefix="instancebench-"))
                shutil.copy(config, home / "dagster.yaml")
                hour = HOURS[round_number % 24]
                row = {"round": round_number + 1, "instance": instance, "hour": hour}
                row |= by_cli(home, _env(home, args, f"{prefix}-{instance}", early=True), hour)
                doc["rounds"].append(row)
                print(json.dumps(row), flush=True)
                shutil.rmtree(home, ignore_errors=True)
    finally:
        request = urllib.request.Request(f"{args.url}/{prefix}*?expand_wildcards=all", method="DELETE")
        urllib.request.urlopen(request, timeout=60).close()
    walls = {name: [r["wall_s"] for r in doc["rounds"] if r["instance"] == name] for name in configs}
    ratios = [p / s for p, s in zip(walls["postgres"], walls["sqlite"], strict=True)]
    doc["summary"] = {
        "median_wall_sqlite_s": statistics.median(walls["sqlite"]),
        "median_wall_postgres_s": statistics.median(walls["postgres"]),
        "ratio_by_round": [round(r, 3) for r in ratios],
        "median_ratio": round(statistics.median(ratios), 3),
    }
    doc["load_after"] = os.getloadavg()
    print(json.dumps(doc["summary"], indent=1))
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
