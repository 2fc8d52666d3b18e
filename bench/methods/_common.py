"""What every method script shares: how it reports its result to the harness (bench/run.py).

A method runs as its own process tree so the harness can measure it from outside; it tells
the harness what only it knows (documents sent, its own load time, its idle RSS) in one
line on stdout, `BENCH_RESULT {json}`, printed last.
"""

from __future__ import annotations

import json
import sys
import time

import psutil

RESULT_MARKER = "BENCH_RESULT "


def rss_mb() -> float:
    """This process's resident memory now: the idle baseline once imports are done."""
    return psutil.Process().memory_info().rss / 2**20


def report(result: dict) -> None:
    """The method's result, as the last line of stdout (the harness parses it)."""
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


class Stopwatch:
    """Monotonic seconds since construction."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def seconds(self) -> float:
        return time.monotonic() - self._start
