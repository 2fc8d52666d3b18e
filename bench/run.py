#!/usr/bin/env python3
"""Benchmark of issue 3: flows_pipeline against the alternatives, one hour at N rows, one ES node.

For each size it generates the synthetic hour once (flows_pipeline's raw_flows and flow_table
code), then runs each method in turn, each into its own fresh index on the benchmark's own
Elasticsearch node, measuring wall time, the process tree's memory (RSS and PSS, ES excluded),
each worker's peak and growth, the node's heap, and the final `_count`. Results go to
bench/results/latest.json (+ timelines.json) and bench/RESULTS.md (bench/report.py).

    bench/run.py                                  # quick: 200,000 rows, every method
    bench/run.py --rows 200000,1000000,7850484    # make bench
    bench/run.py --rows 50000 --methods flows_pipeline,ceiling
    bench/run.py --rows none --nfcapd-flows 50000                   # issue 4's nfcapd figure only
    bench/run.py --rows 7850484 --merge --order flows_pipeline:4,ceiling --budget-until 10:35

Several invocations can fill one results file: `--merge` appends this invocation's rows to the
existing JSON (each row keeps the number of the invocation that measured it; ratios are only
taken between rows of one invocation).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
VENV = PROJECT / ".venv"


def _reexec_in_project_venv() -> None:
    """`bench/run.py` run by any python: continue in the project's venv, which has the pipeline."""
    venv_python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() != VENV.resolve() and venv_python.exists():
        os.execv(str(venv_python), [str(venv_python), str(Path(__file__).resolve()), *sys.argv[1:]])


if __name__ == "__main__":
    _reexec_in_project_venv()

# ruff: noqa: E402 - the imports below need the project's venv, hence after the re-exec
import argparse
import dataclasses
import json
import secrets
import shutil
import time
from dataclasses import dataclass, field

from benchlib import methods as m
from benchlib import nfcapd
from benchlib.dagster_events import step_timings
from benchlib.es_node import EsNode, count_documents, create_index, delete_indices
from benchlib.monitor import MemoryGuard
from benchlib.results import machine, now_utc, result_row, timeline
from benchlib.runner import Command, Measurement, run_measured

QUICK_ROWS = [200_000]
FULL_ROWS = [200_000, 1_000_000, 7_850_484]
# The issue's own figure for the incident's approach here: 7.4 GB at 2,000,000 rows, two workers.
INCIDENT_MB_PER_ROW_FALLBACK = 7.4 * 1024 / 2_000_000
WORK = PROJECT / "bench" / "work"
# a bigger index loads slower (merges): a run's estimate from a smaller size is padded by this
BUDGET_MARGIN = 1.25
RESULTS = PROJECT / "bench" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", default=",".join(map(str, QUICK_ROWS)), help="comma-separated sizes ('none': no loads)"
    )
    parser.add_argument(
        "--methods", default=",".join(m.DEFAULT_METHODS), help=f"comma-separated, of: {', '.join(m.METHODS)}"
    )
    parser.add_argument("--concurrency", default="2,4", help="max_concurrent / thread_count / requests in flight")
    parser.add_argument("--partition", default="2021-10-28-03:00", help="the hour generated and loaded")
    parser.add_argument("--es-port", type=int, default=9250)
    parser.add_argument("--es-heap", default="2g")
    parser.add_argument("--es-dir", type=Path, default=WORK / "es")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="issue 23's standard layout, the production one: the node on core 0, this harness and every "
        "method's processes on core 1 (without it, all share both cores: the second line of the results)",
    )
    parser.add_argument("--keep-es", action="store_true", help="leave the node running at the end")
    parser.add_argument("--client-chunk-size", type=int, default=500, help="parallel_bulk/streaming_bulk chunk_size")
    parser.add_argument(
        "--pipeline-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a FLOWS_* knob for the pipeline's runs (resources.py), e.g. FLOWS_MAX_ROW_GROUPS_PER_CHUNK=2; repeatable",
    )
    parser.add_argument("--mem-limit-gb", type=float, default=8.0, help="tree PSS guard and incident's RLIMIT_AS")
    parser.add_argument("--min-available-gb", type=float, default=4.0, help="kill a run if the machine gets this low")
    parser.add_argument("--timeout-s", type=float, help="per run (default 300 s + rows / 2,000)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of every run per size; ratios use each run's best round"
    )
    parser.add_argument("--sample-interval-s", type=float, default=0.15)
    parser.add_argument("--settle-s", type=float, default=5.0, help="pause between runs (index deletes, merges)")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--no-report", action="store_true", help="skip bench/report.py at the end")
    parser.add_argument(
        "--nfcapd-flows",
        default="",
        help="issue 4: nfcapd -> flow_table for hours of these many flows (comma-separated), next to "
        "nfdump's own export rate; run before the loads",
    )
    parser.add_argument("--merge", action="store_true", help="append to --out's runs instead of starting anew")
    parser.add_argument(
        "--order",
        default="",
        help="run order within a size, e.g. flows_pipeline:4,flows_pipeline:2,ceiling (unlisted runs after, "
        "in the default order)",
    )
    parser.add_argument(
        "--budget-until",
        metavar="HH:MM",
        help="UTC time: a run whose estimated end (its rate at a smaller size) is later is not started "
        "(recorded as 'not run: time budget'), and a run still going then is stopped",
    )
    parser.add_argument("--warmup-bodies", type=int, default=40, help="bodies replayed by the unrecorded warm-up")
    args = parser.parse_args(argv)
    unknown = set(args.methods.split(",")) - set(m.METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(m.METHODS)}")
    return args


@dataclass
class Bench:
    """One invocation: its settings, the node, and everything measured so far."""

    args: argparse.Namespace
    settings: m.Settings
    guard: MemoryGuard
    doc: dict
    timelines: dict = field(default_factory=dict)
    invocation: int = 1  # this invocation's number in doc["invocations"] (--merge appends)

    @property
    def node(self) -> EsNode:
        return self.settings.node

    def save(self) -> None:
        """After every run, so a long invocation that dies keeps what it measured."""
        self.args.out.parent.mkdir(parents=True, exist_ok=True)
        self.args.out.write_text(json.dumps(self.doc, indent=1) + "\n")
        self.args.out.with_name("timelines.json").write_text(json.dumps(self.timelines) + "\n")

    def log(self, text: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def make_bench(args: argparse.Namespace) -> Bench:
    node = EsNode(PROJECT, args.es_dir, args.es_port, args.es_heap, cores="0" if args.pin else None)
    if args.pin:
        os.sched_setaffinity(0, {1})  # the harness; every process it starts inherits core 1
    limit_mb = args.mem_limit_gb * 1024
    settings = m.Settings(
        project=PROJECT,
        work=WORK,
        partition=args.partition,
        node=node,
        client_chunk_size=args.client_chunk_size,
        pipeline_env=dict(kv.split("=", 1) for kv in args.pipeline_env),
        address_space_limit_bytes=int(limit_mb * 2**20),
        timeout_s=args.timeout_s,
        dagster_es_python=WORK / "venv-dagster-es" / "bin" / "python",
    )
    guard = MemoryGuard(tree_pss_limit_mb=limit_mb, min_available_mb=args.min_available_gb * 1024)
    command = "bench/run.py " + " ".join(sys.argv[1:])
    doc = {
        "machine": machine(),
        "es_version": None,
        "date": now_utc(),
        "invocation": command,
        "memory_guard": {
            "tree_pss_limit_mb": limit_mb,
            "min_available_mb": guard.min_available_mb,
            "incident_rlimit_as_bytes": settings.address_space_limit_bytes,
        },
        "flow_table": [],
        "encoded_bodies": [],
        "nfcapd": [],
        "runs": [],
        "invocations": [],
    }
    timelines: dict = {}
    if args.merge and args.out.exists():
        doc, timelines = _previous(args.out), _previous_timelines(args.out)
    number = 1 + max((i["number"] for i in doc["invocations"]), default=0)
    doc["invocations"].append(
        {
            "number": number,
            "command": command,
            "date": now_utc(),
            "ended": None,
            "git": _git_state(),
            "layout": "pinned: the node on core 0, the harness and methods on core 1" if args.pin else "shared cores",
        }
    )
    doc["date"], doc["invocation"] = now_utc(), command  # the latest invocation's
    return Bench(args, settings, guard, doc, timelines, invocation=number)


def _git_state() -> str:
    """The project's commit measured, and whether its pipeline code had uncommitted changes."""
    import subprocess

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=PROJECT, capture_output=True, text=True, timeout=30)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "flows_pipeline")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted flows_pipeline/ changes" if dirty else "")


def _previous(path: Path) -> dict:
    """A results file to merge into; one written before invocations were numbered is invocation 1."""
    doc = json.loads(path.read_text())
    doc.setdefault("nfcapd", [])
    if "invocations" not in doc:
        doc["invocations"] = [{"number": 1, "command": doc.get("invocation"), "date": doc.get("date"), "ended": None}]
    for key in ("runs", "flow_table", "encoded_bodies", "nfcapd"):
        for entry in doc.get(key, []):
            entry.setdefault("invocation", 1)
    return doc


def _previous_timelines(path: Path) -> dict:
    timelines = path.with_name("timelines.json")
    return json.loads(timelines.read_text()) if timelines.exists() else {}


def measure_script(bench: Bench, name: str, argv: list[str], rows: int) -> Measurement:
    """A helper script of the harness, measured like a method (its memory is recorded too)."""
    command = Command([bench.settings.python, *argv], timeout_s=m.timeout_for(bench.settings, rows))
    log_path = WORK / "logs" / f"{name}-{rows}.log"
    return run_measured(command, bench.node, bench.guard, log_path, PROJECT, bench.args.sample_interval_s)


def generate(bench: Bench, rows: int) -> m.Dataset:
    """The hour at `rows`: `dagster asset materialize --select raw_flows,flow_table` of the project,
    so the tables are made exactly as the pipeline makes them; the flow_table build rate is the raw
    rows over the flow_table step's time (STEP_START to STEP_SUCCESS in the run's event log)."""
    root = WORK / "data" / f"rows-{rows}"
    shutil.rmtree(root, ignore_errors=True)
    spec = m.generation_spec(bench.settings, root, rows, secrets.token_hex(3))
    log_path = WORK / "logs" / f"generate-{rows}.log"
    measured = run_measured(spec.command, bench.node, bench.guard, log_path, PROJECT, bench.args.sample_interval_s)
    if measured.error:
        raise RuntimeError(f"generating {rows} rows failed: {measured.error} (log {log_path})")
    steps = {s.step_key: s for s in step_timings(spec.dagster_home)}
    tables = m.generated_tables(bench.settings, root)
    raw_s, table_s = (steps[key].finished - steps[key].started for key in ("raw_flows", "flow_table"))
    bench.doc["flow_table"].append(
        {
            "invocation": bench.invocation,
            "rows": rows,
            "raw_rows": tables.raw_rows,
            "table_rows": tables.table_rows,
            "row_groups": tables.row_groups,
            "table_bytes": tables.table_bytes,
            "raw_s": round(raw_s, 3),
            "raw_rows_per_s": round(tables.raw_rows / raw_s),
            "flow_table_s": round(table_s, 3),
            "flow_table_rows_per_s": round(tables.raw_rows / table_s),
            "wall_s": round(measured.wall_s, 2),
            "peak_tree_rss_mb": round(measured.memory.peak_rss_mb, 1),
            "peak_tree_pss_mb": round(measured.memory.peak_pss_mb, 1),
            "command": spec.command.shell_form(),
        }
    )
    bench.log(f"generated {rows:,} rows: flow_table at {tables.raw_rows / table_s:,.0f} rows/s")
    return m.Dataset(rows, root, tables.table_path, WORK / "bodies" / f"rows-{rows}")


def encode_bodies(bench: Bench, data: m.Dataset) -> None:
    """The ceiling's input, encoded once per size, outside any timed run."""
    shutil.rmtree(data.bodies_dir, ignore_errors=True)
    argv = [bench.settings.script("encode_bodies.py"), "--table", str(data.table_path), "--out", str(data.bodies_dir)]
    measured = measure_script(bench, "encode_bodies", argv, data.rows)
    if measured.error or not measured.result:
        raise RuntimeError(f"encoding bodies of {data.rows} rows failed: {measured.error}")
    bench.doc["encoded_bodies"].append(
        measured.result
        | {"rows": data.rows, "peak_tree_pss_mb": round(measured.memory.peak_pss_mb, 1), "invocation": bench.invocation}
    )
    bench.log(f"encoded {measured.result['bodies']} bodies at {measured.result['encode_docs_per_s']:,.0f} docs/s")


def warm_up(bench: Bench, data: m.Dataset) -> None:
    """One unrecorded load first: a cold JVM made the first run here several times slower."""
    planned = m.PlannedRun(m.CEILING, 2)
    manifest = json.loads((data.bodies_dir / "manifest.json").read_text())
    bodies = manifest[: bench.args.warmup_bodies]  # the first bodies: enough to warm the JVM at any size
    subset = WORK / "bodies" / "warmup"
    shutil.rmtree(subset, ignore_errors=True)
    subset.mkdir(parents=True)
    for entry in bodies:
        (subset / entry["file"]).symlink_to(data.bodies_dir / entry["file"])
    (subset / "manifest.json").write_text(json.dumps(bodies))
    warm = m.Dataset(data.rows, data.storage_root, data.table_path, subset)
    spec = m.build_spec(planned, warm, bench.settings, "warmup")
    client = bench.node.client()
    create_index(client, spec.create_index or spec.count_target)
    measured = run_measured(spec.command, bench.node, bench.guard, WORK / "logs" / "warmup.log", PROJECT, 1.0)
    delete_indices(client, spec.delete_pattern)
    shutil.rmtree(subset, ignore_errors=True)
    bench.log(f"warm-up load ({len(bodies)} bodies): {measured.wall_s:.1f} s, error: {measured.error}")


def incident_skip_reason(bench: Bench, rows: int) -> str | None:
    """Skip a size at which the incident's approach would certainly pass the memory limit."""
    done = [r for r in bench.doc["runs"] if r["method"] == m.INCIDENT and not r["error"] and r["rows"]]
    if done:
        largest = max(done, key=lambda r: r["rows"])
        per_row, source = largest["peak_tree_pss_mb"] / largest["rows"], f"this run's {largest['rows']:,} rows"
    else:
        per_row, source = INCIDENT_MB_PER_ROW_FALLBACK, "the issue's 7.4 GB at 2,000,000 rows"
    estimate = per_row * rows
    limit = bench.guard.tree_pss_limit_mb
    if estimate <= limit:
        return None
    return (
        f"skipped: estimated {estimate:,.0f} MB (from {source}, {per_row * 1024:.2f} KB/row) "
        f"> the {limit:,.0f} MB limit"
    )


def skipped_row(planned: m.PlannedRun, rows: int, reason: str) -> dict:
    return {
        "method": planned.method,
        "rows": rows,
        "max_concurrent": planned.max_concurrent,
        "wall_s": None,
        "docs_per_s": None,
        "peak_tree_rss_mb": None,
        "peak_tree_pss_mb": None,
        "peak_step_rss_mb": None,
        "step_growth_mb": None,
        "docs_in_es": None,
        "error": reason,
        "skipped": True,
    }


def run_one(bench: Bench, planned: m.PlannedRun, data: m.Dataset) -> dict:
    run_id = secrets.token_hex(3)
    spec = m.build_spec(planned, data, bench.settings, run_id)
    left = budget_left_s(bench)
    if left is not None and left < spec.command.timeout_s:  # a run still going at the budget is stopped
        spec = dataclasses.replace(spec, command=dataclasses.replace(spec.command, timeout_s=max(left, 1.0)))
    client = bench.node.client()
    if spec.create_index:
        create_index(client, spec.create_index)
    log_path = WORK / "logs" / f"{spec.method}-{data.rows}-c{spec.max_concurrent}-{run_id}.log"
    measured = run_measured(spec.command, bench.node, bench.guard, log_path, PROJECT, bench.args.sample_interval_s)
    steps = step_timings(spec.dagster_home) if spec.dagster_home else []
    try:
        docs = count_documents(client, spec.count_target)
    finally:
        delete_indices(client, spec.delete_pattern)
    bench.timelines[run_id] = timeline(measured) | {
        "method": spec.method,
        "rows": data.rows,
        "max_concurrent": spec.max_concurrent,
    }
    return result_row(spec, measured, steps, docs)


def run_size(bench: Bench, rows: int, smallest: int, methods: list[str], concurrencies: list[int]) -> None:
    data = generate(bench, rows)
    if {m.CEILING, m.CEILING_WITHOUT_IDS, m.ESPIPE} & set(methods) or rows == smallest:
        encode_bodies(bench, data)
    if m.CEILING_WITHOUT_IDS in methods:
        m.strip_ids(data)
    if rows == smallest:
        warm_up(bench, data)
    # whole rounds repeated (not each run back to back), so other work on the machine spreads over methods
    for repeat in range(1, bench.args.repeat + 1):
        for planned in ordered(m.planned_runs(methods, concurrencies, rows, smallest), bench.args.order):
            run_planned(bench, planned, data, repeat)
    shutil.rmtree(data.bodies_dir, ignore_errors=True)  # ~500 bytes a document on disk
    shutil.rmtree(data.bodies_without_ids_dir, ignore_errors=True)


def ordered(runs: list[m.PlannedRun], order: str) -> list[m.PlannedRun]:
    """--order: `method` or `method:N` tokens first, in that order; the rest keep the default order."""
    tokens = [t.strip() for t in order.split(",") if t.strip()]

    def rank(planned: m.PlannedRun) -> int:
        for i, token in enumerate(tokens):
            method, _, n = token.partition(":")
            if method == planned.method and (not n or int(n) == planned.max_concurrent):
                return i
        return len(tokens)

    return sorted(runs, key=rank)  # stable: ties keep planned_runs' order


def budget_left_s(bench: Bench) -> float | None:
    """Seconds until --budget-until (UTC HH:MM today), or None without a budget."""
    if not bench.args.budget_until:
        return None
    hours, minutes = map(int, bench.args.budget_until.split(":"))
    now = time.time()
    midnight = now - now % 86_400
    return midnight + hours * 3600 + minutes * 60 - now


def budget_skip_reason(bench: Bench, planned: m.PlannedRun, rows: int) -> str | None:
    """Not started when its estimated duration (its wall rate at a smaller size, any invocation of
    this results file, same N if measured) would take it past the budget."""
    left = budget_left_s(bench)
    if left is None:
        return None
    done = [
        r
        for r in bench.doc["runs"]
        if r["method"] == planned.method and r.get("docs_per_s") and not r.get("error") and r["rows"] < rows
    ]
    same_n = [r for r in done if r["max_concurrent"] == planned.max_concurrent] or done
    until = bench.args.budget_until
    if not same_n:
        return None if left > 0 else f"not run: time budget (the invocation's budget ended at {until} UTC)"
    ref = max(same_n, key=lambda r: (r["rows"], r["docs_per_s"]))
    estimate = BUDGET_MARGIN * rows / ref["docs_per_s"]
    if estimate <= left:
        return None
    return (
        f"not run: time budget (estimated {estimate:,.0f} s: {BUDGET_MARGIN} x its {ref['docs_per_s']:,} docs/s at "
        f"{ref['rows']:,} rows; only {max(left, 0):,.0f} s left before the {until} UTC budget)"
    )


def run_planned(bench: Bench, planned: m.PlannedRun, data: m.Dataset, repeat: int) -> None:
    rows = data.rows
    reason = incident_skip_reason(bench, rows) if planned.method == m.INCIDENT else None
    reason = reason or budget_skip_reason(bench, planned, rows)
    if reason and repeat > 1:
        return  # one row says why is enough
    row = skipped_row(planned, rows, reason) if reason else run_one(bench, planned, data)
    row["repeat"] = repeat
    row["invocation"] = bench.invocation
    bench.doc["runs"].append(row)
    bench.save()
    bench.log(
        f"{row['method']:<22} rows {rows:>9,} c{row['max_concurrent']}: wall {row['wall_s']} s, "
        f"{row['docs_per_s']} docs/s, tree PSS {row['peak_tree_pss_mb']} MB, count {row['docs_in_es']}, "
        f"error: {row['error']}"
    )
    time.sleep(bench.args.settle_s)


def main() -> None:
    args = parse_args()
    sizes = [] if args.rows == "none" else sorted(int(r) for r in args.rows.split(","))
    nfcapd_sizes = [int(n) for n in args.nfcapd_flows.split(",") if n.strip()]
    methods = args.methods.split(",")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    bench = make_bench(args)
    bench.log(bench.node.up().splitlines()[-1])
    try:
        # a run killed with the harness leaves its index behind; this node is the bench's own
        delete_indices(bench.node.client(), "bench-*")
        bench.doc["es"] = bench.node.describe()
        bench.doc["es_version"] = bench.doc["es"]["version"]
        bench.doc["invocations"][-1]["es"] = bench.doc["es"]
        for flows in nfcapd_sizes:
            measured = nfcapd.measure(bench, flows, secrets.token_hex(3)) | {"invocation": bench.invocation}
            bench.doc["nfcapd"].append(measured)
            bench.save()
            pipe = measured["pipeline"]
            bench.log(
                f"nfcapd {measured['nfdump_flows']:,} flows: nfdump -o json "
                f"{measured['nfdump_export'][0]['records_per_s']} rec/s; raw_flows {pipe['raw_flows_records_per_s']}, "
                f"flow_table {pipe['flow_table_records_per_s']}, both {pipe['both_records_per_s']} rec/s; "
                f"rows {pipe['flow_table_rows']}; error: {measured['error']}; readers alone (rec/s): "
                + ", ".join(f"{r['reader']} {r['records_per_s']}" for r in measured["readers"])
            )
        for rows in sizes:
            run_size(bench, rows, sizes[0], methods, concurrencies)
    finally:
        bench.doc["invocations"][-1]["ended"] = now_utc()
        bench.save()
        if not args.keep_es:
            bench.log(bench.node.stop())
    if not args.no_report:
        from report import render  # bench/report.py, beside this file

        bench.log(f"wrote {args.out} and {render(args.out)}")


if __name__ == "__main__":
    main()
