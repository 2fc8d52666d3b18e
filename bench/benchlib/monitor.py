"""Memory of a process tree, sampled from outside: tree sums, per-process peaks, a guard.

The harness watches each method as a tree (the root it started and every descendant), so
forked workers, Dagster's forkserver and step processes are all counted. RSS double-counts
pages that forked processes share; PSS splits them, so the tree's PSS sum is what the tree
really costs the machine (the incident's children shared, then copied, their parent's body).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field

import psutil

MB = 2**20
_NAME_SETTLE_S = 1.0
# PSS comes from /proc/PID/smaps_rollup, which the kernel computes by walking the process's page
# tables: ~16 µs per MB of RSS here (4 ms for a 250 MB step process, 38 ms for a 2.4 GB JVM),
# under the process's mmap lock. Read every 150 ms for a pipeline tree of seven processes it cost
# the harness ~21 CPU-s in a 130 s run (the ceiling's one process: ~4 s), taken from the same two
# cores the method and Elasticsearch share. RSS (statm, ~10 µs a process) is read every sample,
# PSS at most once a second per process; the tree's PSS sums each process's latest reading.
PSS_INTERVAL_S = 1.0


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
    cpu_s: float = 0.0  # user + system seconds of this process (not its children), as last seen
    pss_mb: float = 0.0  # latest reading
    pss_read_s: float = float("-inf")  # when it was read

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
    def cpu_s(self) -> float:
        """CPU seconds the tree used (each process as last sampled: may miss its last interval)."""
        return sum(p.cpu_s for p in self.processes.values())

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
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)


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
            known = self.memory.processes.get(proc.pid)
            read_pss = known is None or now - known.pss_read_s >= PSS_INTERVAL_S
            try:
                with proc.oneshot():
                    info = proc.memory_full_info() if read_pss else proc.memory_info()
                    cpu = proc.cpu_times()
                    ppid = proc.ppid()
                    name = self._command_line(proc, now)
            except psutil.Error:
                continue  # exited between listing and reading
            rss = info.rss / MB
            pss = info.pss / MB if read_pss else known.pss_mb
            rss_total += rss
            pss_total += pss
            seen += 1
            peak = self._record_process(proc.pid, ppid, name, now, rss, pss)
            peak.cpu_s = cpu.user + cpu.system
            if read_pss:
                peak.pss_mb, peak.pss_read_s = pss, now
        if seen:
            self.memory.samples.append(Sample(round(now, 3), round(rss_total, 1), round(pss_total, 1), seen))
        self._enforce_guard(pss_total)

    def _command_line(self, proc: psutil.Process, now: float) -> str:
        """The command line, read again only in a process's first second (a spawned process may be
        seen between its fork and its exec); later samples reuse it, sampling costs CPU here too."""
        known = self.memory.processes.get(proc.pid)
        if known is not None and now - known.first_seen_s > _NAME_SETTLE_S:
            return known.name
        return " ".join(proc.cmdline()[:4])[:160]

    def _record_process(self, pid: int, ppid: int, name: str, now: float, rss: float, pss: float) -> ProcessPeak:
        peak = self.memory.processes.get(pid)
        if peak is None:
            peak = self.memory.processes[pid] = ProcessPeak(pid, ppid, name, now, now, rss, rss, pss)
            return peak
        peak.last_seen_s = now
        peak.name = name
        peak.peak_rss_mb = max(peak.peak_rss_mb, rss)
        peak.peak_pss_mb = max(peak.peak_pss_mb, pss)
        return peak

    def _enforce_guard(self, tree_pss_mb: float) -> None:
        if self._guard is None or self.memory.killed_reason:
            return
        reason = self._guard.breach(tree_pss_mb)
        if reason:
            self.memory.killed_reason = reason
            kill_tree(self._root.pid)
