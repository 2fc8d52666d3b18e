#!/usr/bin/env python3
"""Plot issue 23's measurements from their raw JSON in bench/results/ into results/issue23.png.

    .venv/bin/python bench/plot_issue23.py

Four panels, each from one invocation's file (the ratios of RESULTS.md compare rows of one file):
- peers-ids-1m-pinned.json (bench/run.py --pin): wall per round and method, 1M rows;
- fixed-cost-10k-exit.json (bench/fixed_cost.py): a 10,000-row hour's wall per path and variant,
  with the ~8.9 s by CLI before issue 23's work and the halving goal;
- rerun-cost-7.85m.json (bench/rerun_cost.py): load and deletion of the replaced attempt per round;
- backfill-24h-quiet.json (bench/backfill_rate.py): hours/min, the run queue against sequential runs.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent / "results"
SMALL_HOUR_BEFORE_S = 8.9  # by CLI before issue 23's work: 8.65-9.03 s, three runs by hand (RESULTS.md)


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def peers(ax) -> None:
    runs = _load("peers-ids-1m-pinned.json")["runs"]
    methods = list(dict.fromkeys(run["method"] for run in runs))
    rounds = sorted({run["repeat"] for run in runs})
    width = 0.8 / len(rounds)
    for i, repeat in enumerate(rounds):
        walls = [next(r["wall_s"] for r in runs if r["method"] == m and r["repeat"] == repeat) for m in methods]
        ax.bar([x + i * width for x in range(len(methods))], walls, width, label=f"round {repeat}")
    ax.set_xticks([x + width * (len(rounds) - 1) / 2 for x in range(len(methods))], methods, rotation=15)
    ax.set_ylabel("wall s (lower is faster)")
    ax.set_title("1M rows, node on core 0, client on core 1")
    ax.legend(fontsize=8)


def small_hour(ax) -> None:
    rounds = _load("fixed-cost-10k-exit.json")["rounds"]
    labels = list(dict.fromkeys(f"{r['path']} {r['variant']}" for r in rounds))
    for x, label in enumerate(labels):
        walls = [r["wall_s"] for r in rounds if f"{r['path']} {r['variant']}" == label]
        ax.bar(x, statistics.median(walls), 0.6, color="lightsteelblue")
        ax.plot([x] * len(walls), walls, "k.", markersize=5)
    before = f"CLI before issue 23 (~{SMALL_HOUR_BEFORE_S} s)"
    ax.axhline(SMALL_HOUR_BEFORE_S, color="grey", linestyle="--", label=before)
    ax.axhline(SMALL_HOUR_BEFORE_S / 2, color="red", linestyle=":", label="goal: half")
    ax.set_xticks(range(len(labels)), labels, rotation=15)
    ax.set_ylabel("wall s (bar: median, dots: rounds)")
    ax.set_title("a 10,000-row hour")
    ax.legend(fontsize=8)


def rerun(ax) -> None:
    data = _load("rerun-cost-7.85m.json")
    labels = [f"round {i}\n{r['in_flight']} in flight" for i, r in enumerate(data["rounds"], 1)]
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], [r["load_s"] for r in data["rounds"]], 0.4, label="load the new attempt")
    ax.bar([i + 0.2 for i in x], [r["delete_s"] for r in data["rounds"]], 0.4, label="delete the replaced one")
    goals = [r["load_s"] / 2 for r in data["rounds"]]
    ax.plot([i + 0.2 for i in x], goals, "r_", markersize=30, label="goal: 0.5x load")
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("s")
    ax.set_title(f"re-run of {data['rows']:,} rows; {data['searches_during']:,} searches, all exact")
    ax.legend(fontsize=8)


def backfill(ax) -> None:
    data = _load("backfill-24h-quiet.json")
    ways = {"24 sequential CLI runs": data["sequential"], "the run queue (README's limits)": data["queue"]}
    ax.bar(list(ways), [way["hours_per_min"] for way in ways.values()], 0.5, color=["grey", "seagreen"])
    ax.set_ylabel("hours/min")
    ax.set_title(f"{data['hours']} hours x {data['rows']:,} rows: {data['queue_over_sequential_rate']}x")


def main() -> None:
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for panel, ax in zip((peers, small_hour, rerun, backfill), axes.flat, strict=True):
        panel(ax)
    fig.suptitle("issue 23: the node on its own core, a small hour, re-runs, a backfill (bench/RESULTS.md)")
    fig.tight_layout()
    out = RESULTS / "issue23.png"
    fig.savefig(out, dpi=90)
    print(out)


if __name__ == "__main__":
    main()
