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
import json
import secrets
import shutil
import time
from dataclasses import dataclass, field

from benchlib import methods as m
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
RESULTS = PROJECT / "bench" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(map(str, QUICK_ROWS)), help="comma-separated sizes")
    parser.add_argument("--methods", default=",".join(m.METHODS), help=f"comma-separated, of: {', '.join(m.METHODS)}")
    parser.add_argument("--concurrency", default="2,4", help="max_concurrent / thread_count / requests in flight")
    parser.add_argument("--partition", default="2021-10-28-03:00", help="the hour generated and loaded")
    parser.add_argument("--es-port", type=int, default=9250)
    parser.add_argument("--es-heap", default="2g")
    parser.add_argument("--es-dir", type=Path, default=WORK / "es")
    parser.add_argument("--keep-es", action="store_true", help="leave the node running at the end")
    parser.add_argument("--client-chunk-size", type=int, default=500, help="parallel_bulk/streaming_bulk chunk_size")
    parser.add_argument(
        "--pipeline-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a FLOWS_* knob for the pipeline's runs (resources.py), e.g. FLOWS_ROW_GROUPS_PER_CHUNK=2; repeatable",
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
    node = EsNode(PROJECT, args.es_dir, args.es_port, args.es_heap)
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
    doc = {
        "machine": machine(),
        "es_version": None,
        "date": now_utc(),
        "invocation": "bench/run.py " + " ".join(sys.argv[1:]),
        "memory_guard": {
            "tree_pss_limit_mb": limit_mb,
            "min_available_mb": guard.min_available_mb,
            "incident_rlimit_as_bytes": settings.address_space_limit_bytes,
        },
        "flow_table": [],
        "encoded_bodies": [],
        "runs": [],
    }
    return Bench(args, settings, guard, doc)


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
        measured.result | {"rows": data.rows, "peak_tree_pss_mb": round(measured.memory.peak_pss_mb, 1)}
    )
    bench.log(f"encoded {measured.result['bodies']} bodies at {measured.result['encode_docs_per_s']:,.0f} docs/s")


def warm_up(bench: Bench, data: m.Dataset) -> None:
    """One unrecorded load first: a cold JVM made the first run here several times slower."""
    planned = m.PlannedRun(m.CEILING, 2)
    spec = m.build_spec(planned, data, bench.settings, "warmup")
    client = bench.node.client()
    create_index(client, spec.create_index or spec.count_target)
    measured = run_measured(spec.command, bench.node, bench.guard, WORK / "logs" / "warmup.log", PROJECT, 1.0)
    delete_indices(client, spec.delete_pattern)
    bench.log(f"warm-up load: {measured.wall_s:.1f} s, error: {measured.error}")


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
    if m.CEILING in methods or rows == smallest:
        encode_bodies(bench, data)
    if rows == smallest:
        warm_up(bench, data)
    # whole rounds repeated (not each run back to back), so other work on the machine spreads over methods
    for repeat in range(1, bench.args.repeat + 1):
        for planned in m.planned_runs(methods, concurrencies, rows, smallest):
            run_planned(bench, planned, data, repeat)
    shutil.rmtree(data.bodies_dir, ignore_errors=True)  # ~500 bytes a document on disk


def run_planned(bench: Bench, planned: m.PlannedRun, data: m.Dataset, repeat: int) -> None:
    rows = data.rows
    reason = incident_skip_reason(bench, rows) if planned.method == m.INCIDENT else None
    if reason and repeat > 1:
        return  # one row says why is enough
    row = skipped_row(planned, rows, reason) if reason else run_one(bench, planned, data)
    row["repeat"] = repeat
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
    sizes = sorted(int(r) for r in args.rows.split(","))
    methods = args.methods.split(",")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    bench = make_bench(args)
    bench.log(bench.node.up().splitlines()[-1])
    try:
        # a run killed with the harness leaves its index behind; this node is the bench's own
        delete_indices(bench.node.client(), "bench-*")
        bench.doc["es"] = bench.node.describe()
        bench.doc["es_version"] = bench.doc["es"]["version"]
        for rows in sizes:
            run_size(bench, rows, sizes[0], methods, concurrencies)
    finally:
        bench.save()
        if not args.keep_es:
            bench.log(bench.node.stop())
    if not args.no_report:
        from report import render  # bench/report.py, beside this file

        bench.log(f"wrote {args.out} and {render(args.out)}")


if __name__ == "__main__":
    main()
