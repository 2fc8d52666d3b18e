"""What a Dagster run's event log says about its steps: pids, start-up latency, phases.

Step start-up is measured as Dagster itself records it: from the executor's
STEP_WORKER_STARTING (logged by the parent when it launches the step's process) to the step's
STEP_START (logged by the step process once it runs user code).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance


@dataclass(frozen=True)
class StepTiming:
    step_key: str
    pid: int | None  # the process that ran the step (its STEP_START's pid)
    launched: float | None  # STEP_WORKER_STARTING
    started: float | None  # STEP_START
    finished: float | None  # STEP_SUCCESS or STEP_FAILURE

    @property
    def startup_s(self) -> float | None:
        if self.launched is None or self.started is None:
            return None
        return self.started - self.launched

    @property
    def is_index_chunk(self) -> bool:
        return ".index_chunk[" in self.step_key or self.step_key.startswith("index_chunk[")


_FIELDS = {
    DagsterEventType.STEP_WORKER_STARTING.value: "launched",
    DagsterEventType.STEP_START.value: "started",
    DagsterEventType.STEP_SUCCESS.value: "finished",
    DagsterEventType.STEP_FAILURE.value: "finished",
}


def step_timings(dagster_home: Path) -> list[StepTiming]:
    """The steps of the instance's only run (each bench run has a DAGSTER_HOME of its own)."""
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs()
        if not runs:
            return []
        steps: dict[str, dict] = {}
        for entry in instance.all_logs(runs[0].run_id):
            event = entry.dagster_event
            if event is None or event.step_key is None or event.event_type_value not in _FIELDS:
                continue
            step = steps.setdefault(event.step_key, {})
            step[_FIELDS[event.event_type_value]] = entry.timestamp
            if event.event_type_value == DagsterEventType.STEP_START.value:
                step["pid"] = event.pid
    return [
        StepTiming(key, s.get("pid"), s.get("launched"), s.get("started"), s.get("finished"))
        for key, s in sorted(steps.items(), key=lambda kv: kv[1].get("launched") or 0)
    ]


def startup_median_s(steps: list[StepTiming]) -> float | None:
    values = [s.startup_s for s in steps if s.startup_s is not None]
    return statistics.median(values) if values else None


def span_s(steps: list[StepTiming]) -> float | None:
    """From the first step's launch to the last step's end: the run without CLI start and exit."""
    starts = [s.launched for s in steps if s.launched is not None]
    ends = [s.finished for s in steps if s.finished is not None]
    return max(ends) - min(starts) if starts and ends else None


def index_phase_s(steps: list[StepTiming]) -> float | None:
    """From the first index_chunk's STEP_START to the last one's end: the bulk loading itself."""
    chunks = [s for s in steps if s.is_index_chunk and s.started is not None and s.finished is not None]
    if not chunks:
        return None
    return max(s.finished for s in chunks) - min(s.started for s in chunks)
