"""The executor's forkserver, started as soon as a process that will run steps loads the project.

The multiprocess executor starts its forkserver when it launches the first step, and that server
then imports the project and warms it up (step_preload: ~1.5-2 s) while the run waits. A run's
own process spent the seconds before that importing Dagster and the project and creating the run
(~2 s), on one core. Started here instead, the server's preload runs beside them, on the other
core: the same work, in the timed path, overlapped (bench/fixed_cost.py, bench/RESULTS.md). No
step is ever forked from a process holding data: the server starts before any row exists.

Only the processes that orchestrate steps start it: `dagster asset materialize`, `dagster job
execute` and the run worker the daemon's run launcher starts (`dagster api execute_run`). The
webserver, the daemon, code servers and step processes do not. When the executor later launches
its first step it finds this server running with the same preload and uses it; a run configured
with `start_method: spawn` leaves it idle, and it exits with its parent.
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
EARLY_START_ENV = "FLOWS_EARLY_STEP_SERVER"


def orchestrates_steps(argv: Sequence[str]) -> bool:
    """Whether `argv` (sys.argv) is a Dagster command that runs a job's steps in this process."""
    return tuple(argv[1:3]) in _ORCHESTRATING_COMMANDS and os.path.basename(argv[0]).startswith(("dagster", "__main__"))


def start_early(argv: Sequence[str] = sys.argv) -> bool:
    """Start the forkserver now, with the executor's preload, if this process orchestrates steps.

    Returns whether it started one. Off with FLOWS_EARLY_STEP_SERVER=false (then the executor starts
    it at its first step, as Dagster does by default).
    """
    if os.environ.get(EARLY_START_ENV, "true").lower() in ("false", "0", "no") or not orchestrates_steps(argv):
        return False
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([_DAGSTER_FIRST, *PRELOAD_MODULES])
    forkserver.ensure_running()
    return True
