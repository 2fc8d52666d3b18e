#!/usr/bin/env python3
"""Render bench/RESULTS.md and the PNG plots from bench/results/latest.json (+ timelines.json).

    .venv/bin/python bench/report.py [bench/results/latest.json]

The JSON may hold several invocations of bench/run.py (`--merge`); every row says which one
measured it, and every ratio compares rows of one invocation, made side by side on the same node.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

BENCH = Path(__file__).resolve().parent
PIPELINE, CEILING, PARALLEL_BULK = "flows_pipeline", "ceiling", "parallel_bulk"
INCIDENT_ROWS, ONE_MILLION = 7_850_484, 1_000_000
GIB_MB = 1024

COLUMNS: list[tuple[str, str, Callable[[dict], str]]] = [
    ("inv", "invocation", lambda r: f"#{r.get('invocation', 1)}"),
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


def _find(runs: list[dict], method: str, rows: int, n: int | None = None, inv: int | None = None) -> dict | None:
    """The best (fastest) successful round of a method at a size and concurrency, if there is one:
    on a shared machine, other work only ever slows a round down. `inv`: of that invocation only."""
    done = [
        run
        for run in runs
        if run["method"] == method
        and run["rows"] == rows
        and not run.get("error")
        and (n is None or run["max_concurrent"] == n)
        and (inv is None or run.get("invocation", 1) == inv)
    ]
    return max(done, key=lambda run: run["docs_per_s"] or 0, default=None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def results_table(runs: list[dict]) -> str:
    return _table([c[0] for c in COLUMNS], [[c[2](r) for c in COLUMNS] for r in runs])


def ratio_lines(runs: list[dict], doc: dict | None = None) -> list[str]:
    """Pipeline vs ceiling and vs parallel_bulk at the same size and N, by wall and by load time."""
    lines = []
    for rows, inv in sorted({(r["rows"], r.get("invocation", 1)) for r in runs}):
        for n in sorted({r["max_concurrent"] for r in runs if r["method"] == PIPELINE and r["rows"] == rows}):
            pipe = _find(runs, PIPELINE, rows, n, inv)
            if not pipe:
                continue
            for other in (CEILING, PARALLEL_BULK):
                ref = _find(runs, other, rows, n, inv)
                if not ref:
                    continue
                wall = _ratio(pipe["docs_per_s"], ref["docs_per_s"])
                load = _ratio(pipe.get("docs_per_s_load"), ref.get("docs_per_s_load"))
                lines.append(
                    f"- #{inv}, {rows:,} rows, N={n}: flows_pipeline / {other} = **{_num(wall, 2)}×** by wall time "
                    f"({_num(pipe['docs_per_s'])} vs {_num(ref['docs_per_s'])} docs/s), "
                    f"{_num(load, 2)}× by load time ({_num(pipe.get('docs_per_s_load'))} vs "
                    f"{_num(ref.get('docs_per_s_load'))} docs/s)"
                )
    for label, part in code_groups(doc) if doc else []:  # same pipeline code only (may span invocations)
        prs = part["runs"]
        for n in sorted({r["max_concurrent"] for r in prs if r["method"] == PIPELINE}):
            big, base = _find(prs, PIPELINE, INCIDENT_ROWS, n), _find(prs, PIPELINE, ONE_MILLION, n)
            if big and base:
                lines.append(
                    f"- flows_pipeline N={n}, {label}: peak tree PSS at 7,850,484{_inv(big)} / at 1,000,000"
                    f"{_inv(base)} = **{_num(_ratio(big['peak_tree_pss_mb'], base['peak_tree_pss_mb']), 2)}×** "
                    f"({_num(big['peak_tree_pss_mb'])} MB vs {_num(base['peak_tree_pss_mb'])} MB)"
                )
    return lines or ["- (no pair of runs to compare in this invocation)"]


def _verdict(ok: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[ok]


# Why a target was missed and what would close it, as judged from the last full run (bench/RESULTS.md
# is re-rendered from the JSON; these notes are the human part). Keyed like targets() rows.
TARGET_NOTES: dict[str, str] = {
    "complete": "",
    "pss_ratio": (
        "The tree's peak is the CLI and the forkserver (~400 MB RSS together) plus one process per chunk step "
        "running at once (~270 MB RSS, ~150 MB PSS each); it depends on N, not on the hour, as long as the hour "
        "has at least N chunks (the plan gives it N)."
    ),
    "pss_abs": "",
    "growth": (
        "Growth was flat in the chunk's length in this run (read batch, encoded lines, bodies in flight); a "
        "larger figure means something holds more than a batch: trace one index_chunk (tracemalloc, pyarrow "
        "`total_allocated_bytes`)."
    ),
    "ceiling": (
        "Both runs are CPU-bound on the same 2 cores: Elasticsearch needs ~25 CPU-s per 1M documents for "
        "either, and whatever the client spends comes out of the node's share. The client CPU per 1M documents "
        "is in the results table; what would close a gap is less of it, or a node that does not share the "
        "client's cores (the target itself is unchanged)."
    ),
    "parallel_bulk": "",
    "flow_table": (
        "Missed only at 200,000 rows (4 batches): the rate is raw rows over the whole Dagster step. A cProfile "
        "of that step process: building the table 0.26 s (normalizing 0.14, of which IP validation 0.10 with "
        "its regular expressions compiled per call; writing 0.07; reading 0.06), against ~0.13 s for the same "
        "rows in a warm long-lived process; and Dagster's events ~0.09 s (10 events written to SQLite through "
        "52 connections, with 4 schema-revision checks). From 1,000,000 rows on these costs are spread thin "
        "enough. What would close it at 200,000: an event storage that writes faster (PostgreSQL, as a "
        "production instance would use) and less per-batch set-up in normalization (IP validity cached "
        "across batches)."
    ),
    "startup": (
        "Every run's first step takes ~1.5-2 s: launching it starts the forkserver, which imports and preloads "
        "the project. Chunk steps launched together share the 2 cores with Elasticsearch."
    ),
}


def _inv(run: dict | None) -> str:
    return f" (#{run.get('invocation', 1)})" if run else ""


def _commit(inv: dict) -> str:
    return (inv.get("git") or "?").split(" ")[0]


def _pipeline_code(inv: dict) -> str:
    """The flows_pipeline/ tree of the invocation's commit: invocations at different commits that did not
    change the pipeline's code measure the same pipeline."""
    commit = _commit(inv)
    done = subprocess.run(
        ["git", "rev-parse", f"{commit}:flows_pipeline"], cwd=BENCH, capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip() or commit


def code_groups(doc: dict) -> list[tuple[str, dict]]:
    """The results split by the project commit measured: the latest commit's invocations first, then the rest.
    Each part is a doc of its own (runs, flow_table, nfcapd of those invocations), so every target is judged
    on one version of the pipeline."""
    invs = _invocations(doc)
    code = {i["number"]: _pipeline_code(i) for i in invs}
    latest = code[invs[-1]["number"]]
    groups = [[n for n in code if code[n] == latest], [n for n in code if code[n] != latest]]
    out = []
    for numbers in groups:
        if not numbers:
            continue
        part = dict(doc)
        for key in ("runs", "flow_table", "nfcapd", "encoded_bodies"):
            part[key] = [e for e in doc.get(key, []) if e.get("invocation", 1) in numbers]
        commits = sorted({_commit(i) for i in invs if i["number"] in numbers})
        label = ", ".join(f"#{n}" for n in numbers) + " (project " + ", ".join(f"`{c}`" for c in commits) + ")"
        out.append((label, part))
    return out


def targets_section(doc: dict) -> str:
    groups = code_groups(doc)
    text = []
    for i, (label, part) in enumerate(groups):
        if i == 0:
            text.append(f"**The pipeline as of the latest invocation**: {label}.\n\n{targets(part)}")
        else:
            text.append(
                f"**Earlier pipeline code** (for reference; the reasons column applies to the table above): "
                f"{label}.\n\n{targets(part, notes=False)}"
            )
    return "\n\n".join(text)


def targets(doc: dict, notes: bool = True) -> str:
    """The issue's targets, each with the figure measured here (never relaxed)."""
    runs = doc["runs"]
    table: list[list[str]] = []

    def add(key: str, target: str, measured: str, ok: bool | None) -> None:
        note = TARGET_NOTES.get(key, "") if ok is not True and notes else ""
        table.append([target, measured, _verdict(ok), note])

    full = _find(runs, PIPELINE, INCIDENT_ROWS, 4)
    tried = [r for r in runs if r["method"] == PIPELINE and r["rows"] == INCIDENT_ROWS and r["max_concurrent"] == 4]
    if full:
        measured = f"yes: _count {_num(full['docs_in_es'])} in {_num(full['wall_s'])} s{_inv(full)}"
    else:
        measured = f"failed: {_short(tried[-1]['error'], 120)}" if tried else "—"
    add(
        "complete",
        "7,850,484 rows complete with max_concurrent 4",
        measured,
        True if full else (False if tried else None),
    )

    base = _find(runs, PIPELINE, ONE_MILLION, 4)
    ratio = _ratio(full["peak_tree_pss_mb"], base["peak_tree_pss_mb"]) if full and base else None
    add(
        "pss_ratio",
        "flows_pipeline peak tree PSS at 7.85M ≤ 1.25 × its peak at 1M (N=4)",
        f"{_num(ratio, 2)}× ({_num(full['peak_tree_pss_mb'])}{_inv(full)} vs {_num(base['peak_tree_pss_mb'])} MB"
        f"{_inv(base)})"
        if ratio
        else "—",
        ratio <= 1.25 if ratio else None,
    )
    pss = full["peak_tree_pss_mb"] if full else None
    add(
        "pss_abs",
        "flows_pipeline peak tree PSS at 7.85M ≤ 1.5 GiB (1,536 MB, N=4)",
        f"{_num(pss)} MB" if pss else "—",
        pss <= 1.5 * GIB_MB if pss else None,
    )

    growths = [
        (w["growth_mb"], r)
        for r in runs
        if r["method"] == PIPELINE
        for w in r.get("workers", [])
        if "index_chunk[" in w["label"]
    ]
    worst = max(growths, key=lambda g: g[0], default=None)
    add(
        "growth",
        "every index_chunk process grows ≤ 150 MB over its idle baseline (every flows_pipeline run)",
        f"max {_num(worst[0])} MB over {len(growths)} index_chunk processes (the worst: {worst[1]['rows']:,} rows, "
        f"N={worst[1]['max_concurrent']}, #{worst[1].get('invocation', 1)})"
        if worst
        else "—",
        worst[0] <= 150 if worst else None,
    )

    sizes = sorted({r["rows"] for r in runs if r["method"] == PIPELINE and not r.get("error")})
    largest = sizes[-1] if sizes else None
    for key, other, factor in (("ceiling", CEILING, 0.85), ("parallel_bulk", PARALLEL_BULK, 1.3)):
        # every invocation that measured both at the largest size with N=4: a pair of the same invocation
        pairs = []
        for inv in sorted({r.get("invocation", 1) for r in runs}):
            pipe, ref = (_find(runs, method, largest, 4, inv) if largest else None for method in (PIPELINE, other))
            if pipe and ref:
                wall = _ratio(pipe["docs_per_s"], ref["docs_per_s"])
                load = _ratio(pipe.get("docs_per_s_load"), ref.get("docs_per_s_load"))
                pairs.append((wall, load, pipe, ref))
        measured = "; ".join(
            f"#{pipe.get('invocation', 1)}: wall **{_num(wall, 2)}×** ({_num(pipe['docs_per_s'])} vs "
            f"{_num(ref['docs_per_s'])} docs/s), load {_num(load, 2)}× ({_num(pipe.get('docs_per_s_load'))} vs "
            f"{_num(ref.get('docs_per_s_load'))}); other CPU {_num(100 * pipe['cpu']['other_share'])}% / "
            f"{_num(100 * ref['cpu']['other_share'])}%"
            for wall, load, pipe, ref in pairs
        )
        best = max(pairs, key=lambda p: p[0], default=None)  # other work only ever slows a run down
        add(
            key,
            f"throughput ≥ {factor} × {other} (largest size {largest or 0:,} rows, N=4, pairs of one invocation)",
            measured or "—",
            (best[0] >= factor and (best[1] or 0) >= factor) if best else None,
        )

    builds = [(f"synthetic {b['rows']:,}{_inv(b)}", b["flow_table_rows_per_s"]) for b in doc.get("flow_table", [])]
    builds += [
        (f"nfcapd {n['nfdump_flows']:,}{_inv(n)}", n["pipeline"]["flow_table_records_per_s"])
        for n in doc.get("nfcapd", [])
        if n["pipeline"].get("flow_table_records_per_s")
    ]
    if builds:
        best = max(rate for _, rate in builds)
        add(
            "flow_table",
            "flow_table ≥ 1,000,000 rows/s (raw rows / the step's time, event log)",
            "; ".join(f"{label}: {_num(rate)}" for label, rate in builds),
            all(rate >= 1_000_000 for _, rate in builds) if best else None,
        )
    else:
        add("flow_table", "flow_table ≥ 1,000,000 rows/s", "—", None)

    fork = [r for r in runs if r["method"] == PIPELINE and r.get("steps")]
    pooled = sorted(s["startup_s"] for r in fork for s in r["steps"] if s.get("startup_s") is not None)
    median = statistics.median(pooled) if pooled else None
    best = min((r["startup_median_s"] for r in fork if r.get("startup_median_s") is not None), default=None)
    add(
        "startup",
        "Dagster step start-up median < 0.5 s (STEP_WORKER_STARTING → STEP_START, forkserver)",
        f"{_num(median, 3)} s over all {len(pooled)} steps of {len(fork)} flows_pipeline runs (best run's median "
        f"{_num(best, 3)} s)"
        if median is not None
        else "—",
        median < 0.5 if median is not None else None,
    )
    return _table(["target", "measured", "verdict", "reason for a miss; what would close it"], table)


def flow_table_section(doc: dict) -> str:
    rows = [
        [
            f"#{b.get('invocation', 1)}",
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
            "inv",
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
            f"#{b.get('invocation', 1)}",
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
        ["inv", "rows", "bodies", "mean body MiB", "largest body bytes", "encode docs/s (1 process)", "peak PSS MB"],
        rows,
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
                f"#{r.get('invocation', 1)}",
                method,
                f"{r['rows']:,}",
                str(r["max_concurrent"]),
                str(len(steps)),
                _num(r.get("startup_median_s"), 3),
                _num(steps[0]["startup_s"], 3),
                _num(max(s["startup_s"] for s in steps), 3),
            ]
        )
    return _table(
        ["inv", "run", "rows", "N", "steps", "median launch → STEP_START s", "first step s", "slowest s"], rows
    )


def workers_section(runs: list[dict]) -> str:
    """Per worker of the pipeline runs: the index_chunk steps' peaks and growth."""
    rows = []
    for r in runs:
        if r["method"] != PIPELINE:
            continue
        for w in r.get("workers", []):
            rows.append(
                [
                    f"#{r.get('invocation', 1)}",
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
    header = ["inv", "rows", "N", "step", "first RSS MB", "peak RSS MB", "peak PSS MB", "growth MB", "CPU s"]
    return _table(header, rows)


def commands_section(doc: dict) -> str:
    blocks = []
    for inv in _invocations(doc):
        lines = [
            f"# {r['method']} rows={r['rows']} N={r['max_concurrent']}\n{r['command']}"
            for r in doc["runs"]
            if r.get("command") and r.get("invocation", 1) == inv["number"]
        ]
        lines += [
            f"# nfcapd {n['nfdump_flows']:,} flows\n"
            + "\n".join([e["command"] for e in n["nfdump_export"]] + [n["pipeline"]["command"]])
            for n in doc.get("nfcapd", [])
            if n.get("invocation", 1) == inv["number"]
        ]
        blocks.append(f"Invocation #{inv['number']}: `{inv['command']}`\n\n```\n" + "\n".join(lines) + "\n```")
    return "\n\n".join(blocks)


def _invocations(doc: dict) -> list[dict]:
    return doc.get("invocations") or [{"number": 1, "command": doc.get("invocation"), "date": doc.get("date")}]


def invocations_section(doc: dict) -> str:
    rows = []
    for inv in _invocations(doc):
        n = inv["number"]
        runs = [r for r in doc["runs"] if r.get("invocation", 1) == n]
        what = ", ".join(
            f"{size:,}: " + ", ".join(sorted({r["method"] for r in runs if r["rows"] == size}))
            for size in sorted({r["rows"] for r in runs})
        )
        nf = [x for x in doc.get("nfcapd", []) if x.get("invocation", 1) == n]
        if nf:
            what = "; ".join(filter(None, [", ".join(f"nfcapd {x['nfdump_flows']:,} flows" for x in nf), what]))
        when = f"{inv.get('date') or '?'} → {inv.get('ended') or '?'}"
        rows.append([f"#{n}", f"`{inv['command']}`", when, f"`{inv.get('git') or '?'}`", what or "—"])
    header = ["inv", "command", "started → ended (UTC)", "project commit", "what it measured (rows: methods)"]
    return _table(header, rows)


def nfcapd_section(doc: dict) -> str:
    """Issue 4: nfcapd -> flow_table next to nfdump's own export, measured in the same invocation."""
    entries = doc.get("nfcapd", [])
    if not entries:
        return "(not measured in these invocations: `bench/run.py --nfcapd-flows 1000000`)"
    rows = []
    for n in entries:
        p = n["pipeline"]
        exports = {e["format"]: e for e in n["nfdump_export"]}
        rows.append(
            [
                f"#{n.get('invocation', 1)}",
                _num(n["nfdump_flows"]),
                _num(exports.get("json", {}).get("records_per_s")),
                _num(exports.get("csv", {}).get("records_per_s")),
                _num(p.get("raw_flows_records_per_s")),
                _num(p.get("flow_table_records_per_s")),
                _num(p.get("both_records_per_s")),
                f"{_num(p.get('raw_flows_s'), 2)} / {_num(p.get('flow_table_s'), 2)} / {_num(p.get('wall_s'), 1)}",
                f"{_num(p.get('flow_table_rows'))} ({'= nfdump -I' if n.get('rows_match') else '≠ nfdump -I'})",
                _num(p.get("peak_tree_pss_mb")),
                _short(n.get("error")),
            ]
        )
    made = entries[-1]["made"]
    return (
        _table(
            [
                "inv",
                "flows (nfdump -I)",
                "nfdump -o json rec/s",
                "nfdump -o csv rec/s",
                "raw_flows rec/s (via nfdump)",
                "flow_table rec/s",
                "raw_flows + flow_table rec/s",
                "raw_flows s / flow_table s / CLI wall s",
                "flow_table rows",
                "peak PSS MB",
                "error",
            ],
            rows,
        )
        + f"""

The hour (2021-10-28 05:00–05:59 UTC, partition `2021-10-28-05:00`): N single-packet flows with distinct
5-tuples, alternately TCP and UDP, evenly spread over the hour, written as a pcap by
`bench/methods/make_pcap.py` (the project's `flows_pipeline_tests/pcap_writer.py`) and turned into nfcapd
files by nfdump's own `nfpcapd` ({len(made.get("files", []))} files, {_num(made.get("files_bytes", 0) / 2**20, 1)} MB;
cached in `bench/work/nfcapd/flows-N/`):

```
{made.get("make_pcap_command")}
{made.get("nfpcapd_command")}
```

*nfdump rec/s* = flows / wall seconds of `TZ=UTC nfdump -R DIR -o json|csv > /dev/null` (nfdump's own export,
an upper bound for any reader of these files that goes through nfdump). *raw_flows* / *flow_table* rec/s = flows / the
step's STEP_START → STEP_SUCCESS time in the run's event log (`dagster asset materialize --select
raw_flows,flow_table` with `FLOWS_SOURCE=nfcapd`; raw_flows reads the files through nfdump); *both* = flows /
the sum of the two steps. The flow_table's row count is checked against `nfdump -R DIR -I` (`Flows:`)."""
    )


# What the last full run showed besides the targets (human notes, like TARGET_NOTES).
OBSERVATIONS = """\
- **Why the ratio to the ceiling is lower at smaller hours**: a flows_pipeline run pays ~6-8 s that do not
  scale with the hour: the CLI's start (~2.5 CPU-s), the forkserver's start with the first step (1.5-2.2 s),
  `plan_index_chunks`, and `publish_flow_index` (refresh, count, min/max of `event.sequence`, top talkers,
  the alias swap). At 7,850,484 rows that is ~5% of the run; at 1,000,000 rows, a third (see *docs/s (load)*).
- **Client CPU**: at 7,850,484 rows (N=4) the pipeline's whole tree used ~23 CPU-s (2.9 s per 1M
  documents): 4 chunk steps of ~4.2 s each (read, encode, send), the CLI ~3.7 s, the forkserver ~1.4 s. The
  same hour took 62 CPU-s in the previous committed run (30 chunk steps, and the earlier code listed above).
- **Memory**: the chunk steps' growth over their idle baseline did not grow with their chunk's length (~90 MB
  for 250,000-row and 1,960,000-row chunks alike) since Arrow's reader is asked for one row group at a time;
  given all of a chunk's row groups it pre-buffered them (81 MB of Arrow memory for 30 row groups).
- **N=4 vs N=2**: on this 2-core machine N=2 is as fast as N=4 (the node is the bottleneck) and uses ~200 MB
  less; N=4 is what the targets name.
- **Harness cost**: PSS is read from `/proc/PID/smaps_rollup`, which the kernel computes by walking the
  process's page tables (~16 µs per MB of RSS here). Read every 150 ms for every process, as the previous
  runs did, it cost the harness ~21 CPU-s in a 130 s pipeline run against ~4 s for the ceiling's one process,
  on the cores the method and the node share. This run reads RSS every ~150 ms and PSS at most once a second
  per process (the tree's PSS sums the latest readings, so a peak can be missed by up to a second of growth).
- **Explicit ids against ids Elasticsearch generates** (`bench/ids.py --rows 1000000 --rounds 3`, after this
  run, `results/ids.json`): the ceiling's replay of the same 1M-document bodies, as they are and with the ids
  stripped from the action lines, alternating on the same node after a warm-up replay: 92,693-100,306 docs/s
  with the row-number ids, 103,102-105,828 with generated ones, **0.95×** best against best. That ~5% of the
  node's throughput is what duplicate-free retries cost: with generated ids a resent request or chunk would
  add its documents again.
- **The ceiling** replays the pipeline's bodies asking only whether any item failed (`filter_path=errors`),
  as the pipeline's first try does; in the previous runs both asked for every item's status.
- **nfcapd path**: this run measured the record-by-record Python reader (~87,000 records/s for raw_flows,
  ~13× slower than nfdump's own JSON export). A block reader (Arrow's JSON parser on ~1 MiB of nfdump's
  output at a time, the Python reader kept for blocks with an odd record) was committed after this run; its
  figures, measured with the same harness, are in `results/nfcapd-arrow.json` (see the note under the nfcapd
  table below)."""

PIPELINE_CHANGES = """This file holds one invocation of the whole benchmark, run on the pipeline as of the commit it
names. Changes since the previous committed run (4 invocations, pipeline commits 1015756 and aeb1c68), each
measured while making it:

- The forkserver also imports the Dagster instance's storage classes (SQLAlchemy, the SQLite event log, run
  and schedule storage): each step process used to import them after the fork, 0.4-0.9 s of its start-up.
  Step start-up median 1.37 s before, see below now.
- One chunk per `index_chunk` step the run executes at once (`es_bulk_steps`), at most 32 row groups each
  (`FLOWS_MAX_ROW_GROUPS_PER_CHUNK`): the 7.85M hour is 4 chunk steps at N=4 instead of 30.
- Bulk requests first ask only whether any item failed (`filter_path=errors`, `{"errors":false}` instead of
  10,000 item statuses); bodies pass through the client's serializer without its two copies, and are joined
  from Arrow buffers with one copy. Client CPU of indexing a 1M table in one process: 3.3 -> 2.0 s.
- `read_batches` asks Arrow for one row group at a time (see Observations, Memory).
- The Parquet writer keeps dictionaries for string columns only and statistics for timestamps only: writing
  a million flows 340 -> 210 ms.
- The harness reads PSS at most once a second per process (see Observations, Harness cost).

In this run the ceiling's script imported its response filter from the pipeline, which loads Arrow into
it (its tree PSS ~90 MB, and ~0.3 s more start-up in each ~110 s 7.85M replay, i.e. ~0.3% slower by wall
time); it now writes the filter out. The 6 nfcapd reader tests (~2 s) ran once during `parallel_bulk` at
7.85M, N=2 (its *other CPU %*)."""


def plot_memory(timelines: dict, rows: int, out: Path, invocation_of: dict[str, int] | None = None) -> None:
    """Tree PSS over time, one line per run at this size; the node's heap beside it."""
    fig, (tree_ax, heap_ax) = plt.subplots(1, 2, figsize=(13, 4.5))
    for run_id, run in timelines.items():
        if run["rows"] != rows:
            continue
        label = f"{run['method']} N={run['max_concurrent']} #{(invocation_of or {}).get(run_id, 1)}"
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
        labels = [f"{r['method']}\nN={r['max_concurrent']} #{r.get('invocation', 1)}" for r in done]
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
        plot_memory(
            timelines,
            rows,
            plots / f"memory_{rows}.png",
            {r["run_id"]: r.get("invocation", 1) for r in runs if r.get("run_id")},
        )
    if runs:
        plot_throughput(runs, plots / "docs_per_s.png")
    out = results_path.parent.parent / "RESULTS.md"  # bench/results/latest.json -> bench/RESULTS.md
    source = os.path.relpath(results_path.resolve(), BENCH.parent)
    out.write_text(markdown(doc, sizes, Path(os.path.relpath(plots, out.parent)), source, _later_nfcapd(results_path)))
    return out


def _later_nfcapd(results_path: Path) -> str:
    """The nfcapd measurement of a later pipeline commit, kept in a results file of its own
    (results/nfcapd-arrow.json) so that it does not change which code the targets above judge."""
    later = results_path.with_name("nfcapd-arrow.json")
    if not later.exists():
        return ""
    doc = json.loads(later.read_text())
    inv = _invocations(doc)[-1]
    return (
        f"\n\nMeasured later, on pipeline commit `{_commit(inv)}` (the Arrow block reader), with "
        f"`{inv.get('command')}` (`{os.path.relpath(later, BENCH.parent)}`):\n\n{nfcapd_section(doc)}"
    )


def _chunk_size(doc: dict) -> str:
    sizes = {r["method_result"].get("chunk_size") for r in doc["runs"] if (r.get("method_result") or {}).get("helper")}
    return ", ".join(str(size) for size in sorted(sizes)) or "500 (default)"


def markdown(doc: dict, sizes: list[int], plots: Path, source: str, later_nfcapd: str = "") -> str:
    es, runs, m = doc.get("es", {}), doc["runs"], doc["machine"]
    images = "\n".join(f"![memory, {rows:,} rows]({plots}/memory_{rows}.png)" for rows in sizes)
    return f"""# Benchmark results (issue 3)

Rendered by `bench/report.py` from `{source}`, which holds {len(_invocations(doc))} invocation(s) of
`bench/run.py` (each row below says which, as #n; ratios only compare rows of one invocation):

{invocations_section(doc)}

{PIPELINE_CHANGES}

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
Tree memory is the sum over the method's whole process tree, Elasticsearch excluded, sampled with psutil:
RSS every ~150 ms, PSS (`memory_full_info`, i.e. `smaps_rollup`) at most once a second per process, the
tree's PSS summing each process's latest reading. *Worker* = each Dagster step process (flows_pipeline,
dagster-elasticsearch), each pool process (incident), or the one process (the others); *growth* is its
peak RSS over its idle baseline (RSS when first seen; for one-process methods, RSS after imports).
*Client CPU* is the CPU time of the method's tree, *ES CPU* that of the node, per million documents: on
this 2-core machine the client and Elasticsearch share the cores, so client CPU is taken from the node.
*Other CPU %* is the share of the machine's CPU capacity during the run used by neither the method's
tree, nor Elasticsearch, nor the harness: other work on the shared machine; a high value marks a noisy run.

{results_table(runs)}

### Ratios (same invocation, same node)

{chr(10).join(ratio_lines(runs, doc))}

### Targets of issue 3

{targets_section(doc)}

*Idle baseline* of a step process = its RSS at the harness's first sample of it (psutil, every ~150 ms), i.e.
just after the forkserver forked it: that RSS already counts the ~170 MB of imports the forkserver preloaded
(`flows_pipeline.orchestration.step_preload`), which the step shares copy-on-write;
*growth* = its peak RSS − that baseline.
Ratios of throughput: *wall* = rows / the whole command's seconds; *load* = rows / the method's own load time.

### Observations

{OBSERVATIONS}

## nfcapd → flow_table, next to nfdump's own export (issue 4, "Performance")

{nfcapd_section(doc)}{later_nfcapd}

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
- **ceiling**: the bodies flows_pipeline's encoder makes (the chunk plan of N=4, same 5 MiB /
  10,000-document cut), written to disk before the run, POSTed by N threads with urllib3, asking
  only whether any item failed (`filter_path=errors`), as flows_pipeline's first try does.

## Exact commands

`make bench-quick` = `bench/run.py --rows 200000`; `make bench` = `bench/run.py --rows 200000,1000000,7850484
--nfcapd-flows 1000000`.
Each run, as the harness started it (environment overrides first), per invocation:

{commands_section(doc)}
"""


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else BENCH / "results" / "latest.json"
    print(render(path))
