"""Run one method's command as a measured process tree: wall time, tree memory, ES heap, result.

A method that fails (non-zero exit, out of memory, killed by the memory guard, timed out) is a
result with an `error`, never an exception of the harness: the incident's approach is expected
to fail that way at sizes the machine cannot afford.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchlib.es_node import EsNode, HeapSampler
from benchlib.monitor import MemoryGuard, TreeMemory, TreeMonitor, kill_tree

RESULT_MARKER = "BENCH_RESULT "  # the line a method script prints last (methods/_common.py)
_ERROR_TAIL_LINES = 12


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # on top of the harness's environment
    unset_env: tuple[str, ...] = ("ES_URL",)  # the bench node is chosen by ES_PORT/--url only
    timeout_s: float = 3600.0
    address_space_limit_bytes: int | None = None  # RLIMIT_AS of every process, via prlimit

    def full_argv(self) -> list[str]:
        if self.address_space_limit_bytes is None:
            return self.argv
        # prlimit sets RLIMIT_AS before exec; forked workers inherit it, so none can map more
        return ["prlimit", f"--as={self.address_space_limit_bytes}", "--", *self.argv]

    def shell_form(self) -> str:
        """The command as a person would type it (for RESULTS.md); long JSON values abbreviated."""
        env = " ".join(f"{k}={_abbreviated(shlex.quote(v))}" for k, v in sorted(self.env.items()))
        return f"{env} {shlex.join(self.full_argv())}".strip()


def _abbreviated(value: str, limit: int = 120) -> str:
    return value if len(value) <= limit else f"'<{len(value)} characters: see bench/benchlib/methods.py>'"


@dataclass(frozen=True)
class CpuUse:
    """Where the machine's CPU went during a run: the shared machine's other work is noise."""

    wall_s: float
    machine_busy_s: float
    tree_s: float
    es_s: float
    harness_s: float

    @property
    def other_s(self) -> float:
        return max(0.0, self.machine_busy_s - self.tree_s - self.es_s - self.harness_s)

    def as_dict(self) -> dict:
        capacity = self.wall_s * (psutil.cpu_count() or 1)
        return {
            "tree_s": round(self.tree_s, 2),
            "es_s": round(self.es_s, 2),
            "harness_s": round(self.harness_s, 2),
            "other_s": round(self.other_s, 2),
            "other_share": round(self.other_s / capacity, 3) if capacity else None,
        }


class _CpuClock:
    """CPU counters of the machine, the ES process and the harness at one moment."""

    def __init__(self, es_pid: int | None) -> None:
        times = psutil.cpu_times()
        self.busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        self.es = _process_cpu(es_pid)
        own = resource.getrusage(resource.RUSAGE_SELF)
        self.harness = own.ru_utime + own.ru_stime

    def since(self, start: _CpuClock, wall_s: float, tree_s: float) -> CpuUse:
        return CpuUse(wall_s, self.busy - start.busy, tree_s, self.es - start.es, self.harness - start.harness)


def _process_cpu(pid: int | None) -> float:
    try:
        times = psutil.Process(pid).cpu_times() if pid else None
    except psutil.Error:
        return 0.0
    return times.user + times.system if times else 0.0


@dataclass
class Measurement:
    returncode: int | None
    wall_s: float
    memory: TreeMemory
    es_samples: list[tuple[float, float, float]]
    result: dict | None
    error: str | None
    log_path: Path
    cpu: CpuUse


def run_measured(
    command: Command, node: EsNode, guard: MemoryGuard, log_path: Path, cwd: Path, interval_s: float
) -> Measurement:
    """Start the command, sample it and the node until it exits (or the guard/timeout ends it)."""
    env = {k: v for k, v in os.environ.items() if k not in command.unset_env} | command.env
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    cpu_start = _CpuClock(node.pid())
    heap = HeapSampler(node, t0)
    heap.start()
    with log_path.open("w") as log:
        proc = subprocess.Popen(command.full_argv(), env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        monitor = TreeMonitor(proc.pid, t0, interval_s=interval_s, guard=guard)
        monitor.start()
        timed_out = _wait(proc, command.timeout_s)
        wall_s = time.monotonic() - t0
        memory = monitor.stop()
    cpu = _CpuClock(node.pid()).since(cpu_start, wall_s, memory.cpu_s)
    es_samples = heap.stop()
    lines = _tail(log_path)
    result = _parse_result(lines)
    error = _error_of(proc.returncode, memory, timed_out, command.timeout_s, lines)
    return Measurement(proc.returncode, wall_s, memory, es_samples, result, error, log_path, cpu)


def _wait(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Wait for exit; on timeout kill the whole tree. True if it timed out."""
    try:
        proc.wait(timeout=timeout_s)
        return False
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.wait(timeout=60)
        return True


def _tail(log_path: Path, keep: int = 400) -> list[str]:
    with log_path.open(errors="replace") as log:
        return list(deque(log, maxlen=keep))


def _parse_result(lines: list[str]) -> dict | None:
    for line in reversed(lines):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    return None


def _error_of(
    returncode: int | None, memory: TreeMemory, timed_out: bool, timeout_s: float, lines: list[str]
) -> str | None:
    if memory.killed_reason:
        return memory.killed_reason
    if timed_out:
        return f"timed out after {timeout_s:.0f} s (tree killed by the harness)"
    if returncode == 0:
        return None
    how = f"killed by {signal.Signals(-returncode).name}" if returncode < 0 else f"exit {returncode}"
    relevant = [line.rstrip() for line in lines if line.strip() and not line.startswith(RESULT_MARKER)]
    return f"{how}: " + " | ".join(relevant[-_ERROR_TAIL_LINES:])[-2000:]
