#!/usr/bin/env python3
"""Render bench/RESULTS.md and the PNG plots from bench/results/latest.json (+ timelines.json).

    .venv/bin/python bench/report.py [bench/results/latest.json]

Everything in RESULTS.md comes from the JSON of one invocation of bench/run.py, so every
ratio compares runs made side by side on the same node.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

BENCH = Path(__file__).resolve().parent
PIPELINE, CEILING, PARALLEL_BULK = "flows_pipeline", "ceiling", "parallel_bulk"
INCIDENT_ROWS, ONE_MILLION = 7_850_484, 1_000_000
GIB_MB = 1024

COLUMNS: list[tuple[str, str, Callable[[dict], str]]] = [
    ("method", "method", lambda r: r["method"]),
    ("rows", "rows", lambda r: f"{r['rows']:,}"),
    ("N", "max_concurrent", lambda r: str(r["max_concurrent"])),
    ("round", "repeat", lambda r: str(r.get("repeat", 1))),
    ("wall s", "wall_s", lambda r: _num(r.get("wall_s"), 1)),
    ("docs/s", "docs_per_s", lambda r: _num(r.get("docs_per_s"))),
    ("docs/s (load)", "docs_per_s_load", lambda r: _num(r.get("docs_per_s_load"))),
    ("tree RSS MB", "peak_tree_rss_mb", lambda r: _num(r.get("peak_tree_rss_mb"))),
    ("tree PSS MB", "peak_tree_pss_mb", lambda r: _num(r.get("peak_tree_pss_mb"))),
    ("worker peak RSS MB", "peak_step_rss_mb", lambda r: _num(r.get("peak_step_rss_mb"))),
    ("worker growth MB", "step_growth_mb", lambda r: _num(r.get("step_growth_mb"))),
    ("ES heap peak MB", "es_heap_peak_mb", lambda r: _num(r.get("es_heap_peak_mb"))),
    ("_count", "docs_in_es", lambda r: _num(r.get("docs_in_es"))),
    ("client CPU s / 1M docs", "cpu", lambda r: _num(r["cpu"]["tree_s"] / r["rows"] * 1e6, 1) if r.get("cpu") else "—"),
    ("ES CPU s / 1M docs", "cpu", lambda r: _num(r["cpu"]["es_s"] / r["rows"] * 1e6, 1) if r.get("cpu") else "—"),
    ("other CPU %", "cpu", lambda r: _num(100 * r["cpu"]["other_share"]) if r.get("cpu") else "—"),
    ("error", "error", lambda r: _short(r.get("error"))),
]


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _short(text: str | None, limit: int = 160) -> str:
    if not text:
        return ""
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _find(runs: list[dict], method: str, rows: int, n: int | None = None) -> dict | None:
    """The best (fastest) successful round of a method at a size and concurrency, if there is one:
    on a shared machine, other work only ever slows a round down."""
    done = [
        run
        for run in runs
        if run["method"] == method
        and run["rows"] == rows
        and not run.get("error")
        and (n is None or run["max_concurrent"] == n)
    ]
    return max(done, key=lambda run: run["docs_per_s"] or 0, default=None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def results_table(runs: list[dict]) -> str:
    return _table([c[0] for c in COLUMNS], [[c[2](r) for c in COLUMNS] for r in runs])


def ratio_lines(runs: list[dict]) -> list[str]:
    """Pipeline vs ceiling and vs parallel_bulk at the same size and N, by wall and by load time."""
    lines = []
    for rows in sorted({r["rows"] for r in runs}):
        for n in sorted({r["max_concurrent"] for r in runs if r["method"] == PIPELINE and r["rows"] == rows}):
            pipe = _find(runs, PIPELINE, rows, n)
            if not pipe:
                continue
            for other in (CEILING, PARALLEL_BULK):
                ref = _find(runs, other, rows, n)
                if not ref:
                    continue
                wall = _ratio(pipe["docs_per_s"], ref["docs_per_s"])
                load = _ratio(pipe.get("docs_per_s_load"), ref.get("docs_per_s_load"))
                lines.append(
                    f"- {rows:,} rows, N={n}: flows_pipeline / {other} = **{_num(wall, 2)}×** by wall time "
                    f"({_num(pipe['docs_per_s'])} vs {_num(ref['docs_per_s'])} docs/s), "
                    f"{_num(load, 2)}× by load time ({_num(pipe.get('docs_per_s_load'))} vs "
                    f"{_num(ref.get('docs_per_s_load'))} docs/s)"
                )
    for n in sorted({r["max_concurrent"] for r in runs if r["method"] == PIPELINE}):
        big, base = _find(runs, PIPELINE, INCIDENT_ROWS, n), _find(runs, PIPELINE, ONE_MILLION, n)
        if big and base:
            lines.append(
                f"- flows_pipeline N={n}: peak tree PSS at 7,850,484 / at 1,000,000 = "
                f"**{_num(_ratio(big['peak_tree_pss_mb'], base['peak_tree_pss_mb']), 2)}×** "
                f"({_num(big['peak_tree_pss_mb'])} MB vs {_num(base['peak_tree_pss_mb'])} MB)"
            )
    return lines or ["- (no pair of runs to compare in this invocation)"]


def _verdict(ok: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[ok]


def targets(doc: dict) -> str:
    """The issue's targets, each with the figure measured here (never relaxed)."""
    runs = doc["runs"]
    sizes = sorted({r["rows"] for r in runs if r["method"] == PIPELINE})
    largest = sizes[-1] if sizes else None
    rows: list[list[str]] = []

    full = _find(runs, PIPELINE, INCIDENT_ROWS, 4)
    tried = any(r["method"] == PIPELINE and r["rows"] == INCIDENT_ROWS and r["max_concurrent"] == 4 for r in runs)
    rows.append(
        [
            "7,850,484 rows complete with max_concurrent 4",
            "yes" if full else ("failed" if tried else "—"),
            _verdict(True if full else (False if tried else None)),
        ]
    )

    big, base = full, _find(runs, PIPELINE, ONE_MILLION, 4)
    ratio = _ratio(big["peak_tree_pss_mb"], base["peak_tree_pss_mb"]) if big and base else None
    rows.append(
        [
            "peak tree PSS at 7.85M ≤ 1.25 × at 1M (N=4)",
            _num(ratio, 2) + "×" if ratio else "—",
            _verdict(ratio <= 1.25 if ratio else None),
        ]
    )
    pss = big["peak_tree_pss_mb"] if big else None
    rows.append(
        [
            "peak tree PSS at 7.85M ≤ 1.5 GiB (N=4)",
            _num(pss) + " MB" if pss else "—",
            _verdict(pss <= 1.5 * GIB_MB if pss else None),
        ]
    )

    growths = [r["index_chunk_growth_mb"] for r in runs if r["method"] == PIPELINE and r.get("index_chunk_growth_mb")]
    worst = max(growths) if growths else None
    rows.append(
        [
            "every index_chunk process grows ≤ 150 MB over its idle baseline",
            f"max {_num(worst)} MB" if worst else "—",
            _verdict(worst <= 150 if worst else None),
        ]
    )

    for other, factor in ((CEILING, 0.85), (PARALLEL_BULK, 1.3)):
        pipe = _find(runs, PIPELINE, largest, 4) if largest else None
        ref = _find(runs, other, largest, 4) if largest else None
        ratio = _ratio(pipe["docs_per_s"], ref["docs_per_s"]) if pipe and ref else None
        rows.append(
            [
                f"throughput ≥ {factor} × {other} (largest size, N=4, wall docs/s)",
                f"{_num(ratio, 2)}× at {largest:,} rows" if ratio else "—",
                _verdict(ratio >= factor if ratio else None),
            ]
        )

    for build in doc.get("flow_table", []):
        rate = build["flow_table_rows_per_s"]
        rows.append(
            [
                f"flow_table ≥ 1,000,000 rows/s ({build['rows']:,} rows)",
                f"{_num(rate)} rows/s",
                _verdict(rate >= 1_000_000),
            ]
        )

    fork = [r["startup_median_s"] for r in runs if r["method"] == PIPELINE and r.get("startup_median_s") is not None]
    median = min(fork) if fork else None
    rows.append(
        [
            "Dagster step start-up median < 0.5 s (forkserver, best run)",
            f"{_num(median, 3)} s" if median else "—",
            _verdict(median < 0.5 if median else None),
        ]
    )
    return _table(["target", "measured", "verdict"], rows)


def flow_table_section(doc: dict) -> str:
    rows = [
        [
            f"{b['rows']:,}",
            _num(b["raw_rows_per_s"]),
            _num(b["flow_table_rows_per_s"]),
            _num(b["flow_table_s"], 2),
            str(b["row_groups"]),
            _num(b["table_bytes"] / 2**20, 1),
            _num(b.get("peak_tree_pss_mb")),
        ]
        for b in doc.get("flow_table", [])
    ]
    return _table(
        [
            "rows",
            "raw_flows rows/s",
            "raw → flow_table rows/s",
            "flow_table s",
            "row groups",
            "table MB",
            "peak PSS MB",
        ],
        rows,
    )


def bodies_section(doc: dict) -> str:
    rows = [
        [
            f"{b['rows']:,}",
            str(b["bodies"]),
            _num(b["bytes"] / b["bodies"] / 2**20, 2),
            _num(b["max_body_bytes"]),
            _num(b["encode_docs_per_s"]),
            _num(b.get("peak_tree_pss_mb")),
        ]
        for b in doc.get("encoded_bodies", [])
    ]
    return _table(
        ["rows", "bodies", "mean body MiB", "largest body bytes", "encode docs/s (1 process)", "peak PSS MB"], rows
    )


def startup_section(runs: list[dict]) -> str:
    rows = []
    for r in runs:
        steps = [s for s in r.get("steps", []) if s.get("startup_s") is not None]
        if not steps:
            continue
        method = r["method"] + (" (spawn)" if "spawn" in r["method"] else "")
        rows.append(
            [
                method,
                f"{r['rows']:,}",
                str(r["max_concurrent"]),
                str(len(steps)),
                _num(r.get("startup_median_s"), 3),
                _num(steps[0]["startup_s"], 3),
                _num(max(s["startup_s"] for s in steps), 3),
            ]
        )
    return _table(["run", "rows", "N", "steps", "median launch → STEP_START s", "first step s", "slowest s"], rows)


def workers_section(runs: list[dict]) -> str:
    """Per worker of the pipeline runs: the index_chunk steps' peaks and growth."""
    rows = []
    for r in runs:
        if r["method"] != PIPELINE:
            continue
        for w in r.get("workers", []):
            rows.append(
                [
                    f"{r['rows']:,}",
                    str(r["max_concurrent"]),
                    w["label"].replace("flow_index.", ""),
                    _num(w["first_rss_mb"]),
                    _num(w["peak_rss_mb"]),
                    _num(w["peak_pss_mb"]),
                    _num(w["growth_mb"]),
                    _num(w.get("cpu_s"), 2),
                ]
            )
    return _table(["rows", "N", "step", "first RSS MB", "peak RSS MB", "peak PSS MB", "growth MB", "CPU s"], rows)


def commands_section(runs: list[dict]) -> str:
    lines = []
    for r in runs:
        if r.get("command"):
            lines.append(f"# {r['method']} rows={r['rows']} N={r['max_concurrent']}\n{r['command']}")
    return "```\n" + "\n".join(lines) + "\n```"


def plot_memory(timelines: dict, rows: int, out: Path) -> None:
    """Tree PSS over time, one line per run at this size; the node's heap beside it."""
    fig, (tree_ax, heap_ax) = plt.subplots(1, 2, figsize=(13, 4.5))
    for run in timelines.values():
        if run["rows"] != rows:
            continue
        label = f"{run['method']} N={run['max_concurrent']}"
        if run["tree"]:
            tree_ax.plot([p[0] for p in run["tree"]], [p[2] for p in run["tree"]], label=label)
        if run["es"]:
            heap_ax.plot([p[0] for p in run["es"]], [p[1] for p in run["es"]], label=label)
    tree_ax.set(title=f"process tree PSS, {rows:,} rows", xlabel="seconds", ylabel="MB")
    heap_ax.set(title="Elasticsearch JVM heap used", xlabel="seconds", ylabel="MB")
    tree_ax.legend(fontsize=7)
    heap_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_throughput(runs: list[dict], out: Path) -> None:
    """docs/s (wall) per method and N, one panel per size."""
    sizes = sorted({r["rows"] for r in runs})
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.5), squeeze=False)
    for ax, rows in zip(axes[0], sizes, strict=True):
        done = [r for r in runs if r["rows"] == rows and r.get("docs_per_s")]
        labels = [f"{r['method']}\nN={r['max_concurrent']}" for r in done]
        ax.bar(range(len(done)), [r["docs_per_s"] for r in done], color="tab:blue", label="wall")
        ax.bar(
            range(len(done)),
            [r.get("docs_per_s_load") or 0 for r in done],
            color="none",
            edgecolor="tab:orange",
            label="load phase",
        )
        ax.set_xticks(range(len(done)), labels, rotation=60, ha="right", fontsize=7)
        ax.set(title=f"{rows:,} rows", ylabel="documents / s")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def render(results_path: Path) -> Path:
    doc = json.loads(results_path.read_text())
    timelines_path = results_path.with_name("timelines.json")
    timelines = json.loads(timelines_path.read_text()) if timelines_path.exists() else {}
    plots = results_path.parent
    runs = doc["runs"]
    sizes = sorted({r["rows"] for r in runs})
    for rows in sizes:
        plot_memory(timelines, rows, plots / f"memory_{rows}.png")
    if runs:
        plot_throughput(runs, plots / "docs_per_s.png")
    out = results_path.parent.parent / "RESULTS.md"  # bench/results/latest.json -> bench/RESULTS.md
    source = os.path.relpath(results_path.resolve(), BENCH.parent)
    out.write_text(markdown(doc, sizes, Path(os.path.relpath(plots, out.parent)), source))
    return out


def _chunk_size(doc: dict) -> str:
    sizes = {r["method_result"].get("chunk_size") for r in doc["runs"] if (r.get("method_result") or {}).get("helper")}
    return ", ".join(str(size) for size in sorted(sizes)) or "500 (default)"


def markdown(doc: dict, sizes: list[int], plots: Path, source: str) -> str:
    es, runs, m = doc.get("es", {}), doc["runs"], doc["machine"]
    images = "\n".join(f"![memory, {rows:,} rows]({plots}/memory_{rows}.png)" for rows in sizes)
    return f"""# Benchmark results (issue 3)

Rendered by `bench/report.py` from `{source}` — measured {doc["date"]} with
`{doc["invocation"]}`.

- **Machine**: {m["cpu"]}, {m["cores"]} cores, {m["memory_gb"]} GB, Linux {m["kernel"]}, Python {m["python"]}
  (shared with other work while measuring).
- **Elasticsearch**: {doc.get("es_version")} ({es.get("jvm", "?")}), one node, heap {es.get("heap")}
  ({es.get("heap_max_mb")} MB max), {es.get("processors")} processors; started with `{es.get("started_with")}`;
  node settings {json.dumps(es.get("node_settings", {}))}.
- **Every index** during its load: {json.dumps(es.get("index_settings_during_load", {}))}, the pipeline's strict
  flow mapping, document ids = row numbers of the hour (all methods send the same documents).
- **Memory guard** (every run): tree PSS over {doc["memory_guard"]["tree_pss_limit_mb"]:,.0f} MB or the machine's
  available memory under {doc["memory_guard"]["min_available_mb"]:,.0f} MB kills the run's tree, recorded as its
  error; the incident's approach also runs under `prlimit --as={doc["memory_guard"]["incident_rlimit_as_bytes"]}`.

## Results

N = `max_concurrent` (flows_pipeline: also `es_bulk_steps`; each index_chunk step has 2 bulk requests in
flight), `thread_count` (parallel_bulk), requests in flight (ceiling), pool workers (incident).
*docs/s* is rows / wall seconds of the whole command (interpreter and Dagster start-up included);
*docs/s (load)* uses the method's own load time (Dagster runs: first step launch to last step end).
Tree memory is the sum over the method's whole process tree, sampled every ~150 ms with psutil
(`memory_full_info`), Elasticsearch excluded. *Worker* = each Dagster step process (flows_pipeline,
dagster-elasticsearch), each pool process (incident), or the one process (the others); *growth* is its
peak RSS over its idle baseline (RSS when first seen; for one-process methods, RSS after imports).
*Client CPU* is the CPU time of the method's tree, *ES CPU* that of the node, per million documents: on
this 2-core machine the client and Elasticsearch share the cores, so client CPU is taken from the node.
*Other CPU %* is the share of the machine's CPU capacity during the run used by neither the method's
tree, nor Elasticsearch, nor the harness: other work on the shared machine; a high value marks a noisy run.

{results_table(runs)}

### Ratios (same invocation, same node)

{chr(10).join(ratio_lines(runs))}

### Targets of issue 3

{targets(doc)}

## flow_table build (`dagster asset materialize --select raw_flows,flow_table`)

Rate = raw rows / the step's STEP_START → STEP_SUCCESS time in the run's event log; *peak PSS* is the
whole generation run's tree (CLI and step processes).

{flow_table_section(doc)}

## The ceiling's bodies (flows_pipeline's encoder alone, no Elasticsearch)

{bodies_section(doc)}

## Dagster step start-up (from the event log: STEP_WORKER_STARTING → STEP_START)

{startup_section(runs)}

## flows_pipeline steps: memory per process

{workers_section(runs)}

## Plots

![docs/s per method]({plots}/docs_per_s.png)

{images}

## Method notes

- All methods send the same documents: the flow table's 16 fields plus `event.sequence` (the row
  number, as flows_pipeline adds it), with `_id` = the row number, into indices with the same mapping
  and load settings. Non-Dagster methods' indices are created by the harness; flows_pipeline and
  dagster-elasticsearch create their own (same mapping and settings).
- **incident** (`bench/methods/incident.py`): `pd.read_parquet` of the whole hour, every action built
  in the parent, chunks of 118,947 actions (7,850,484 / 66, the post-mortem's 66 chunks), then
  `ProcessPoolExecutor(mp_context=fork)` with default `max_workers`, one `helpers.bulk` task per chunk.
- **dagster-elasticsearch 0.0.2**: the asset returns the hour's DataFrame; the IO manager indexes it with
  `helpers.bulk` (500 rows a request, one thread). Read with `dtype_backend="numpy_nullable"`: a plain
  `pd.read_parquet` turns null ports into float NaN, which the client writes as `NaN` and Elasticsearch 9
  rejects (`document_parsing_exception … Non-standard token 'NaN'`); the incident's reader does the same.
- **parallel_bulk / streaming_bulk**: `pq.ParquetFile.iter_batches(10,000)` → `to_pylist()` → one action
  dict per row; the client's default serializer; `chunk_size` {_chunk_size(doc)}.
- **ceiling**: the bodies flows_pipeline's encoder makes (same chunk plan, same 5 MiB / 10,000-document
  cut), written to disk before the run, POSTed by N threads with urllib3.

## Exact commands

`make bench-quick` = `bench/run.py --rows 200000`; `make bench` = `bench/run.py --rows 200000,1000000,7850484`.
Each run, as the harness started it (environment overrides first):

{commands_section(runs)}
"""


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else BENCH / "results" / "latest.json"
    print(render(path))
