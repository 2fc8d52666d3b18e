"""One run's measurement -> one result row of bench/results/latest.json (and its timeline)."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime

import psutil

from benchlib.dagster_events import StepTiming, index_phase_s, span_s, startup_median_s
from benchlib.methods import WORKERS_DAGSTER_STEPS, WORKERS_POOL_CHILDREN, RunSpec
from benchlib.monitor import ProcessPeak
from benchlib.runner import Measurement

_HELPER_PROCESS_HINTS = ("resource_tracker", "forkserver", "semaphore_tracker")
TIMELINE_POINTS = 400


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "?")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return f.readlines()
    except OSError:
        return []


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def worker_processes(spec: RunSpec, m: Measurement, steps: list[StepTiming]) -> list[tuple[ProcessPeak, str]]:
    """The processes whose peak and growth are the method's per-worker figures, with a label."""
    processes = m.memory.processes
    if spec.workers == WORKERS_DAGSTER_STEPS:
        by_pid = {s.pid: s.step_key for s in steps if s.pid is not None}
        return [(p, by_pid[pid]) for pid, p in processes.items() if pid in by_pid]
    root = min(processes.values(), key=lambda p: p.first_seen_s, default=None)
    if root is None:
        return []
    if spec.workers == WORKERS_POOL_CHILDREN:
        return [
            (p, "pool worker")
            for p in processes.values()
            if p.ppid == root.pid and not any(h in p.name for h in _HELPER_PROCESS_HINTS)
        ]
    return [(root, "process")]


def _growth(peak: ProcessPeak, spec: RunSpec, result: dict | None) -> float:
    """Peak over the idle baseline: first seen, or for a one-process method its RSS after imports."""
    if spec.workers not in (WORKERS_DAGSTER_STEPS, WORKERS_POOL_CHILDREN) and result and "baseline_rss_mb" in result:
        return peak.peak_rss_mb - result["baseline_rss_mb"]
    return peak.growth_mb


def result_row(spec: RunSpec, m: Measurement, steps: list[StepTiming], docs_in_es: int | None) -> dict:
    workers = worker_processes(spec, m, steps)
    growths = [(_growth(p, spec, m.result), label) for p, label in workers]
    chunk_growths = [g for g, label in growths if "index_chunk[" in label]
    error = m.error or _count_error(spec.rows, docs_in_es)
    load_s = _load_seconds(spec, m, steps)
    return {
        "method": spec.method,
        "rows": spec.rows,
        "max_concurrent": spec.max_concurrent,
        "wall_s": round(m.wall_s, 2),
        "docs_per_s": round(spec.rows / m.wall_s) if not error else None,
        "load_s": round(load_s, 2) if load_s else None,
        "docs_per_s_load": round(spec.rows / load_s) if load_s and not error else None,
        "index_phase_s": _round(index_phase_s(steps)),
        "peak_tree_rss_mb": round(m.memory.peak_rss_mb, 1),
        "peak_tree_pss_mb": round(m.memory.peak_pss_mb, 1),
        "peak_step_rss_mb": round(max((p.peak_rss_mb for p, _ in workers), default=0.0), 1) or None,
        "step_growth_mb": round(max((g for g, _ in growths), default=0.0), 1) if growths else None,
        "index_chunk_growth_mb": round(max(chunk_growths), 1) if chunk_growths else None,
        "es_heap_peak_mb": max((s[1] for s in m.es_samples), default=None),
        "es_rss_peak_mb": max((s[2] for s in m.es_samples), default=None),
        "docs_in_es": docs_in_es,
        "startup_median_s": _round(startup_median_s(steps), 3),
        "cpu": m.cpu.as_dict(),
        "error": error,
        "run_id": spec.run_id,
        "notes": spec.notes,
        "command": spec.command.shell_form(),
        "method_result": m.result,
        "log": str(m.log_path),
        "workers": [_worker_entry(p, label, g) for (p, label), (g, _) in zip(workers, growths, strict=True)],
        "other_processes": _other_processes(m, {p.pid for p, _ in workers}),
        "steps": [_step_entry(s) for s in steps],
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return round(value, digits) if value is not None else None


def _count_error(rows: int, docs_in_es: int | None) -> str | None:
    if docs_in_es == rows:
        return None
    return f"_count is {docs_in_es}, expected {rows}"


def _load_seconds(spec: RunSpec, m: Measurement, steps: list[StepTiming]) -> float | None:
    """The method's own loading time, without interpreter start-up: the run's step span for
    Dagster runs, the method's own stopwatch otherwise."""
    if steps:
        return span_s(steps)
    return (m.result or {}).get("load_s")


def _worker_entry(p: ProcessPeak, label: str, growth: float) -> dict:
    return {
        "pid": p.pid,
        "label": label,
        "first_rss_mb": round(p.first_rss_mb, 1),
        "peak_rss_mb": round(p.peak_rss_mb, 1),
        "peak_pss_mb": round(p.peak_pss_mb, 1),
        "growth_mb": round(growth, 1),
        "cpu_s": round(p.cpu_s, 2),
        "seen_s": [round(p.first_seen_s, 2), round(p.last_seen_s, 2)],
    }


def _other_processes(m: Measurement, worker_pids: set[int]) -> list[dict]:
    """The tree's other processes (CLI, forkserver, trackers): what a method costs besides its workers."""
    return [
        {"pid": p.pid, "name": p.name, "peak_rss_mb": round(p.peak_rss_mb, 1), "cpu_s": round(p.cpu_s, 2)}
        for p in m.memory.processes.values()
        if p.pid not in worker_pids
    ]


def _step_entry(s: StepTiming) -> dict:
    return {
        "step": s.step_key,
        "pid": s.pid,
        "startup_s": _round(s.startup_s, 3),
        "seconds": _round(s.finished - s.started if s.finished and s.started else None),
    }


def timeline(m: Measurement) -> dict:
    """Tree memory and ES heap over time, thinned to at most TIMELINE_POINTS (keeping peaks)."""
    tree = [[s.t, s.rss_mb, s.pss_mb, s.processes] for s in m.memory.samples]
    return {"tree": _thin(tree), "es": _thin([list(s) for s in m.es_samples])}


def _thin(points: list[list[float]]) -> list[list[float]]:
    if len(points) <= TIMELINE_POINTS:
        return points
    step = len(points) / TIMELINE_POINTS
    buckets = [points[int(i * step) : int((i + 1) * step)] for i in range(TIMELINE_POINTS)]
    # the sample with the highest second value (RSS or heap) of each bucket: peaks survive thinning
    return [max(bucket, key=lambda p: p[1]) for bucket in buckets if bucket]
