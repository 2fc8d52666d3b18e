"""Memory of a process tree, sampled from outside: tree sums, per-process peaks, a guard.

The harness watches each method as a tree (the root it started and every descendant), so
forked workers, Dagster's forkserver and step processes are all counted. RSS double-counts
pages that forked processes share; PSS splits them, so the tree's PSS sum is what the tree
really costs the machine (the incident's children shared, then copied, their parent's body).
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field

import psutil

MB = 2**20


@dataclass
class ProcessPeak:
    """One process of the tree: when it was seen, its memory when first seen and at its peak."""

    pid: int
    ppid: int
    name: str
    first_seen_s: float
    last_seen_s: float
    first_rss_mb: float
    peak_rss_mb: float
    peak_pss_mb: float

    @property
    def growth_mb(self) -> float:
        """Peak over the process's own idle baseline (its RSS when first seen)."""
        return self.peak_rss_mb - self.first_rss_mb


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the monitor started
    rss_mb: float
    pss_mb: float
    processes: int


@dataclass(frozen=True)
class MemoryGuard:
    """When to kill a tree: its PSS over a limit, or the shared machine running short."""

    tree_pss_limit_mb: float
    min_available_mb: float

    def breach(self, tree_pss_mb: float) -> str | None:
        if tree_pss_mb > self.tree_pss_limit_mb:
            limit = self.tree_pss_limit_mb
            return f"killed by the harness: tree PSS {tree_pss_mb:.0f} MB over the {limit:.0f} MB limit"
        available = psutil.virtual_memory().available / MB
        if available < self.min_available_mb:
            return (
                f"killed by the harness: machine's available memory {available:.0f} MB under "
                f"{self.min_available_mb:.0f} MB (tree PSS {tree_pss_mb:.0f} MB)"
            )
        return None


@dataclass
class TreeMemory:
    """Everything the monitor saw of one tree."""

    samples: list[Sample] = field(default_factory=list)
    processes: dict[int, ProcessPeak] = field(default_factory=dict)
    killed_reason: str | None = None

    @property
    def peak_rss_mb(self) -> float:
        return max((s.rss_mb for s in self.samples), default=0.0)

    @property
    def peak_pss_mb(self) -> float:
        return max((s.pss_mb for s in self.samples), default=0.0)


def tree_of(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def kill_tree(root_pid: int) -> None:
    """SIGKILL the tree, descendants first so none is re-parented and missed."""
    try:
        root = psutil.Process(root_pid)
        members = root.children(recursive=True)
    except psutil.Error:
        return
    for proc in [*reversed(members), root]:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass


class TreeMonitor(threading.Thread):
    """Samples a tree every `interval_s` until stopped; enforces the guard if one is given."""

    def __init__(self, root_pid: int, t0: float, interval_s: float = 0.15, guard: MemoryGuard | None = None) -> None:
        super().__init__(name=f"tree-monitor-{root_pid}", daemon=True)
        self.memory = TreeMemory()
        self._root = psutil.Process(root_pid)
        self._interval_s = interval_s
        self._guard = guard
        self._stop_event = threading.Event()
        self._t0 = t0  # the run's start (time.monotonic), shared with the heap sampler for plots

    def stop(self) -> TreeMemory:
        self._stop_event.set()
        self.join()
        return self.memory

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._sample_once()
            self._stop_event.wait(self._interval_s)

    def _sample_once(self) -> None:
        now = time.monotonic() - self._t0
        rss_total = pss_total = 0.0
        seen = 0
        for proc in tree_of(self._root):
            try:
                with proc.oneshot():
                    info = proc.memory_full_info()  # smaps_rollup: PSS as well as RSS
                    ppid = proc.ppid()
                    name = " ".join(proc.cmdline()[:4])[:160]
            except psutil.Error:
                continue  # exited between listing and reading
            rss, pss = info.rss / MB, info.pss / MB
            rss_total += rss
            pss_total += pss
            seen += 1
            self._record_process(proc.pid, ppid, name, now, rss, pss)
        if seen:
            self.memory.samples.append(Sample(round(now, 3), round(rss_total, 1), round(pss_total, 1), seen))
        self._enforce_guard(pss_total)

    def _record_process(self, pid: int, ppid: int, name: str, now: float, rss: float, pss: float) -> None:
        peak = self.memory.processes.get(pid)
        if peak is None:
            self.memory.processes[pid] = ProcessPeak(pid, ppid, name, now, now, rss, rss, pss)
            return
        peak.last_seen_s = now
        peak.name = name  # a forked step keeps its server's cmdline, a spawned one gets its own
        peak.peak_rss_mb = max(peak.peak_rss_mb, rss)
        peak.peak_pss_mb = max(peak.peak_pss_mb, pss)

    def _enforce_guard(self, tree_pss_mb: float) -> None:
        if self._guard is None or self.memory.killed_reason:
            return
        reason = self._guard.breach(tree_pss_mb)
        if reason:
            self.memory.killed_reason = reason
            kill_tree(self._root.pid)
