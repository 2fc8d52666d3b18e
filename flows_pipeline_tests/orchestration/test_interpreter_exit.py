"""A run's process leaves its heap to the exit, not to one last collection; other processes keep theirs."""

import os
import subprocess
import sys

from flows_pipeline_tests.orchestration.test_step_server import CODE_SERVER, MATERIALIZE
from flows_pipeline_tests.support import PROJECT

PROBE = """
import atexit, gc, sys
sys.argv = {argv!r}
import flows_pipeline.definitions
before = gc.get_freeze_count()
atexit._run_exitfuncs()  # what the interpreter runs as it exits, before its finalization
print(before, gc.get_freeze_count(), len(gc.get_objects()))
"""


def _freeze_counts(argv: list[str]) -> tuple[int, int, int]:
    """(frozen before the exit handlers, frozen after them, objects a collection would still visit)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FLOWS_EARLY_STEP_SERVER": "false"},  # no forkserver for the probe
    )
    assert done.returncode == 0, done.stderr
    before, frozen, collectable = (int(n) for n in done.stdout.split())
    return before, frozen, collectable


def test_a_cli_runs_exit_handlers_move_the_heap_out_of_the_interpreters_last_collection():
    before, frozen, collectable = _freeze_counts(MATERIALIZE)
    assert before == 0  # nothing frozen while the process lives: its collections work as usual
    assert frozen > 100_000  # Dagster's, the project's and the client's objects
    assert collectable < 1_000  # what finalization's collection would still visit


def test_a_code_server_keeps_its_last_collection():
    assert _freeze_counts(CODE_SERVER)[1] == 0
