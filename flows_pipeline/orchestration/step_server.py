"""The executor's forkserver, started as soon as a process that will run steps loads the project.

The multiprocess executor starts its forkserver when it launches the first step, and that server
then imports the project and warms it up (step_preload: ~1.5-2 s) while the run waits. A run's
own process spent the seconds before that importing Dagster and the project and creating the run
(~2 s), on one core. Started here instead, the server's preload runs beside them, on the other
core: the same work, in the timed path, overlapped (bench/fixed_cost.py, bench/RESULTS.md). No
step is ever forked from a process holding data: the server starts before any row exists.

Only the processes that orchestrate a run's steps start it: `dagster asset materialize` and
`dagster job execute` (the main process, by its command line), and the run worker that a code
server spawns for each run the daemon's or the webserver's run launcher starts (the process whose
target is Dagster's `start_run_in_subprocess`). The webserver, the daemon, code servers and step
processes do not (a spawned step inherits its parent's sys.argv: hence the main-process check).
When the executor later launches its first step it finds this server running with the same
preload and uses it; a run configured with `start_method: spawn` leaves it idle, and it exits
with its parent.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence
from multiprocessing import forkserver

PRELOAD_MODULES = [
    "flows_pipeline.orchestration.step_allocator",  # first: before Arrow loads
    "flows_pipeline.orchestration.step_preload",
]
# what Dagster's multiprocess executor puts first in every forkserver preload (dagster/_core/executor/multiprocess.py)
_DAGSTER_FIRST = "dagster._core.executor.multiprocess"
_ORCHESTRATING_COMMANDS = (("asset", "materialize"), ("job", "execute"), ("api", "execute_run"))
_RUN_WORKER_TARGET = "start_run_in_subprocess"  # dagster/_grpc/server.py: the code server's process for a run
EARLY_START_ENV = "FLOWS_EARLY_STEP_SERVER"


def orchestrates_steps(argv: Sequence[str], is_main_process: bool, process_target: str | None) -> bool:
    """Whether this process runs a job's steps: a Dagster command that does so by its `argv`
    (sys.argv) in a main process, or the process a code server spawned to run a run
    (`process_target`: the name of the multiprocessing target the process was started with)."""
    if process_target == _RUN_WORKER_TARGET:
        return True
    by_command = tuple(argv[1:3]) in _ORCHESTRATING_COMMANDS
    return is_main_process and by_command and os.path.basename(argv[0]).startswith(("dagster", "__main__"))


def this_process_orchestrates_steps() -> bool:
    """orchestrates_steps for the running process."""
    target = getattr(multiprocessing.current_process(), "_target", None)  # set for a Process(target=...) child
    return orchestrates_steps(sys.argv, multiprocessing.parent_process() is None, getattr(target, "__name__", None))


def start_early() -> bool:
    """Start the forkserver now, with the executor's preload, if this process orchestrates steps.

    Returns whether it started one. Off with FLOWS_EARLY_STEP_SERVER=false (then the executor starts
    it at its first step, as Dagster does by default), and with any FLOWS_EXECUTOR but `multiprocess`
    (no step forks here).
    """
    if os.environ.get(EARLY_START_ENV, "true").lower() in ("false", "0", "no"):
        return False
    if os.environ.get("FLOWS_EXECUTOR", "multiprocess") != "multiprocess":  # steps run elsewhere (celery workers)
        return False
    if not this_process_orchestrates_steps():
        return False
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([_DAGSTER_FIRST, *PRELOAD_MODULES])
    forkserver.ensure_running()
    return True
