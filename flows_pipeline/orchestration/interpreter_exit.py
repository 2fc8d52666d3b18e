"""A run's process exits without the interpreter's last full garbage collection.

After `dagster asset materialize` has recorded RUN_SUCCESS, CPython's finalization still collects
every object the process holds (Dagster, Arrow, the client, the run's plan and events): measured by
hand from the last exit handler to the process's end, 0.9-1.0 s on a quiet machine and 1.2-2.5 s with
the other core busy; a 10,000-row hour's CLI wall went from 6.42 to 6.03 s (median of 4, bench/
fixed_cost.py, bench/RESULTS.md). Nothing is left for that collection to do: the process is ending,
Dagster closes its instance, files and connections in the context managers that opened them,
logging and multiprocessing clean up in exit handlers of their own, and objects outside reference
cycles are still freed as their modules are cleared (those in cycles are not finalized, which
CPython never promises at exit). So an exit handler moves every object to the collector's
permanent generation, which finalization does not visit; the exit then takes ~0.1 s.

Registered in the processes that orchestrate a run's steps (step_server.orchestrates_steps: the
CLI's run, and the run worker a code server spawns), not in servers, pytest or steps.
"""

import atexit
import gc


def skip_final_collection() -> None:
    """Freeze the heap (gc.freeze) in an exit handler registered now: it runs after the handlers
    registered later, before those registered earlier (logging's, multiprocessing's, which allocate
    little) and before the interpreter's finalization."""
    atexit.register(gc.freeze)
