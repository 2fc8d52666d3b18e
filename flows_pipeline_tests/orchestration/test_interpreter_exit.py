"""A process that imported the definitions leaves its heap to the exit, not to one last collection."""

import subprocess
import sys

from flows_pipeline_tests.support import PROJECT

PROBE = """
import atexit, gc, sys
sys.argv = ["pytest"]  # not a run's process: no forkserver here
import flows_pipeline.definitions
before = gc.get_freeze_count()
atexit._run_exitfuncs()  # what the interpreter runs as it exits, before its finalization
print(before, gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_the_exit_handlers_move_the_heap_out_of_the_interpreters_last_collection():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, frozen, collectable = (int(n) for n in done.stdout.split())
    assert before == 0, done.stdout  # nothing frozen while the process lives: its collections work as usual
    assert frozen > 100_000, done.stdout  # Dagster's, the project's and the client's objects
    assert collectable < 1_000, done.stdout  # what finalization's collection would still visit
