"""Runs whose process is gone: their `flows_es_bulk` slots are freed before a new load claims slots.

A run's orchestrating process claims and frees the pool slots of its index_chunk steps. When that
process is SIGKILLed (a host or container kill, the OOM killer), the run stays STARTED and its
slots stay taken: every later run of any hour waits at "Step blocked by limit for pool
flows_es_bulk" (issue 11; dagster-io/dagster#32560). Dagster 1.13 frees slots only of runs that
reached a finished status, and only from the daemon (`run_monitoring.free_slots_after_run_end_seconds`,
dagster/_daemon/monitoring/concurrency.py); the run launcher's worker health check is not
implemented by the DefaultRunLauncher, and `dagster asset materialize` runs no daemon at all.

So every run records where its orchestrating process runs as soon as its first step starts (run
tag RUN_PROCESS_TAG: run id, host name, kernel boot id, pid and the process's start time). Before a
load claims slots, and on every tick of the daemon's `flows_dead_runs` sensor, the runs in progress
whose recorded process is gone *from this host* are marked failed and their slots freed: the pid
does not exist, is a zombie, or is another process (its start time differs: the pid was reused),
or the run was recorded on this host under an earlier boot (a reboot killed it; pids and start
times of an earlier boot mean nothing now). A run of another host, or one that recorded nothing,
is left alone with a warning naming the command that clears it by hand. A process that exists but
cannot be inspected is alive. Marked failed, such a run is retried by the daemon's run retries or
re-requested by the catch-up sensor (orchestration/catch_up.py) like any failed hour.

By hand (Linux; DAGSTER_HOME set): `python -m flows_pipeline.orchestration.stale_runs RUN_ID`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    OpExecutionContext,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from dagster._core.storage.dagster_run import FINISHED_STATUSES

from flows_pipeline.orchestration.concurrency import ES_BULK_POOL

RUN_PROCESS_TAG = "flows/run_process"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
HAND_COMMAND = "python -m flows_pipeline.orchestration.stale_runs"
Log = logging.Logger | logging.LoggerAdapter


class ProcessState(Enum):
    RUNNING = "running"
    GONE = "gone"
    EARLIER_BOOT = "gone with an earlier boot of this host"
    OTHER_HOST = "on another host"
    NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class RunProcess:
    """Where a run's orchestrating process runs, precisely enough to tell later whether it still does."""

    host: str
    boot_id: str
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: clock ticks after boot; tells a reused pid apart
    # the run that recorded it: a re-execution copies its parent's tags, and so a process it never had
    run_id: str = ""

    @classmethod
    def of(cls, pid: int, run_id: str = "") -> RunProcess | None:
        """The process `pid` of this host, or None when /proc cannot say (not Linux, no such pid)."""
        stat = _stat(pid)
        if stat is None or not BOOT_ID.exists():
            return None
        return cls(socket.gethostname(), BOOT_ID.read_text().strip(), pid, stat[2], run_id)

    def to_tag(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_tag(cls, value: str | None) -> RunProcess | None:
        try:
            return cls(**json.loads(value)) if value else None
        except (ValueError, TypeError):
            return None

    def state(self) -> ProcessState:
        here = RunProcess.of(os.getpid())
        if here is None or self.host != here.host:
            return ProcessState.OTHER_HOST
        if self.boot_id != here.boot_id:
            return ProcessState.EARLIER_BOOT
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return ProcessState.GONE
        except PermissionError:
            pass  # another user's process: it exists
        stat = _stat(self.pid)
        if stat is None:  # exists but cannot be read (or just exited): never judged gone on a guess
            return ProcessState.RUNNING
        _, state, start_ticks = stat
        return ProcessState.GONE if state in "ZX" or start_ticks != self.start_ticks else ProcessState.RUNNING


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state letter, start ticks) of a process from /proc/<pid>/stat, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ", which may contain spaces
    return int(fields[1]), fields[0], int(fields[19])


def _ancestors(pid: int) -> list[int]:
    chain = []
    while (stat := _stat(pid)) is not None and stat[0] > 0 and len(chain) < 64:
        pid = stat[0]
        chain.append(pid)
    return chain


def before_claiming_slots(context: OpExecutionContext) -> None:
    """Called by a load before its chunk steps claim slots: record this run's process, then free
    the slots of runs whose process is gone."""
    record_run_process(context.instance, context.run_id, context.log)
    free_slots_of_dead_runs(context.instance, context.run_id, context.log)


def recorded_process(run: DagsterRun | None) -> RunProcess | None:
    """The process `run` recorded itself (None: nothing recorded, or a tag copied from a parent run)."""
    process = RunProcess.from_tag(run.tags.get(RUN_PROCESS_TAG)) if run else None
    return process if process and process.run_id in ("", run.run_id) else None


def record_run_process(instance: DagsterInstance, run_id: str, log: Log) -> RunProcess | None:
    """Tag the run with its orchestrating process: the pid Dagster records on the run's latest
    RUN_START event, checked to be an ancestor of this step process (so on this host).
    Every asset's first step calls it; the run's tags are written once."""
    run = instance.get_run_by_id(run_id)
    if (known := recorded_process(run)) is not None and known.run_id == run_id:
        return known
    starts = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_START, limit=1, ascending=False)
    event = starts.records[0].event_log_entry.dagster_event if starts.records else None
    pid = event.pid if event else None
    in_this_tree = pid == os.getpid() or pid in _ancestors(os.getpid())  # in-process executor: the step is the run
    process = RunProcess.of(pid, run_id) if pid and in_this_tree else None
    if process is None:
        log.warning(
            f"run {run_id}: its orchestrating process (pid {pid}) is not a process of this host that this step "
            f"descends from, so its {ES_BULK_POOL} slots cannot be freed automatically if it dies; "
            f"`{HAND_COMMAND} {run_id}` frees them by hand"
        )
        return None
    instance.add_run_tags(run_id, {RUN_PROCESS_TAG: process.to_tag()})
    return process


def free_slots_of_dead_runs(instance: DagsterInstance, own_run_id: str | None, log: Log) -> list[str]:
    """Mark failed every run in progress but the caller's own whose recorded process is gone from
    this host, saying why, and free the pool slots (claimed or assigned) it holds. Runs holding
    slots that cannot be judged get a warning. Returns the run ids marked failed and freed."""
    pool = ES_BULK_POOL
    info = instance.event_log_storage.get_concurrency_info(pool)
    holders = {s.run_id for s in info.claimed_slots} | {p.run_id for p in info.pending_steps if p.assigned_timestamp}
    # a run that died before its load holds no slot, but stays "in progress" until judged
    in_progress = {r.run_id for r in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED]))}
    freed = []
    for run_id in sorted((holders | in_progress) - {own_run_id}):
        run = instance.get_run_by_id(run_id)
        process = recorded_process(run)
        state = process.state() if process else ProcessState.NOT_RECORDED
        if state in (ProcessState.GONE, ProcessState.EARLIER_BOOT):
            why = f"its process (pid {process.pid} on {process.host}) is {state.value}"
            _fail_and_free(instance, run_id, why)
            log.warning(f"marked run {run_id} failed and freed its {pool} slots: {why}")
            freed.append(run_id)
        elif state is not ProcessState.RUNNING and run_id in holders:
            log.warning(
                f"run {run_id} holds {pool} slots and its process is {state.value}: this host cannot tell "
                f"whether it still runs. If it does not, `{HAND_COMMAND} {run_id}` frees them"
            )
    return freed


def _fail_and_free(instance: DagsterInstance, run_id: str, why: str) -> None:
    run = instance.get_run_by_id(run_id)
    if run is not None and run.status not in FINISHED_STATUSES:
        instance.report_run_failed(run, f"Marked failed by flows_pipeline: {why}; its {ES_BULK_POOL} slots are freed.")
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def free_by_hand(instance: DagsterInstance, run_id: str) -> str:
    """Mark one run failed (if it is not finished) and free all its pool slots, unless its recorded
    process runs on this host. For a run whose process is gone, or runs on a host that is gone."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise SystemExit(f"no run {run_id} in the instance at DAGSTER_HOME={os.environ.get('DAGSTER_HOME')}")
    process = recorded_process(run)
    if process is not None and process.state() is ProcessState.RUNNING:
        raise SystemExit(f"run {run_id} still runs here (pid {process.pid}): its slots are in use, not stuck")
    _fail_and_free(instance, run_id, f"its slots were freed by hand (`{HAND_COMMAND} {run_id}`)")
    return f"run {run_id}: marked failed if it was not finished, and its pool slots freed"


DEAD_RUNS_SENSOR_SECONDS = 60


@sensor(
    name="flows_dead_runs",
    minimum_interval_seconds=DEAD_RUNS_SENSOR_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Each minute, marks failed the runs in progress whose process is gone from this host (killed, or "
        f"lost with an earlier boot) and frees their {ES_BULK_POOL} slots: after a reboot the next hours do not "
        "wait on the pool. Runs of other hosts are left alone (see the warning it logs)."
    ),
)
def flows_dead_runs_sensor(context: SensorEvaluationContext) -> SkipReason:
    """Requests nothing: judges the runs in progress (free_slots_of_dead_runs) and says what it did."""
    freed = free_slots_of_dead_runs(context.instance, None, context.log)
    return SkipReason(
        f"marked failed and freed {len(freed)} run(s) whose process is gone: {', '.join(freed)}"
        if freed
        else "no run in progress has lost its process"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=HAND_COMMAND,
        description=f"Free the {ES_BULK_POOL} slots of runs whose process is gone (the instance of DAGSTER_HOME). "
        "Without RUN_ID: every run of this host whose process is gone, and list the runs it cannot judge.",
    )
    parser.add_argument("run_id", nargs="?", help="one run to free, e.g. of a host that is gone")
    args = parser.parse_args(argv)
    log = logging.getLogger(HAND_COMMAND)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with DagsterInstance.get() as instance:
        if args.run_id:
            log.info(free_by_hand(instance, args.run_id))
        else:
            freed = free_slots_of_dead_runs(instance, None, log)
            log.info(f"freed the {ES_BULK_POOL} slots of {len(freed)} run(s) whose process is gone")


if __name__ == "__main__":
    sys.exit(main())
