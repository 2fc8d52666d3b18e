"""A process that loaded the project exits without the interpreter's last full garbage collection.

After `dagster asset materialize` has recorded RUN_SUCCESS, CPython's finalization still collects
every object the process holds (Dagster, Arrow, the client, the run's plan and events): 0.9-1.0 s
of a 10,000-row hour's ~8 s on a quiet machine, and 1.2-2.5 s with the other core busy (bench/,
"Fixed cost of a small hour"). Nothing is left for that collection to do: the process is ending,
Dagster closes its instance, files and connections in the context managers that opened them,
logging flushes its handlers in an exit handler of its own, and objects outside reference cycles
are still freed as their modules are cleared (those in cycles are not finalized, as CPython never
promises at exit). So the last exit handler moves
every object to the collector's permanent generation, which finalization does not visit; the
exit then takes ~0.1 s. Step processes are unaffected (a forked step ends with `os._exit`).
"""

import atexit
import gc


def skip_final_collection() -> None:
    """Freeze the heap (gc.freeze) in an exit handler registered now, so it runs after the exit
    handlers registered later and before the interpreter's finalization."""
    atexit.register(gc.freeze)
