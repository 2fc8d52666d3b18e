"""The steps' forkserver starts as a run's process loads the project, and only in such processes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows_pipeline.orchestration.step_server import orchestrates_steps
from flows_pipeline_tests.support import PROJECT

DAGSTER = str(Path(sys.executable).with_name("dagster"))
MODULE_MAIN = str(Path(__import__("dagster").__file__).with_name("__main__.py"))

# what sys.argv is in each process that imports the definitions
MATERIALIZE = [DAGSTER, "asset", "materialize", "-m", "flows_pipeline.definitions", "--select", "*"]
CODE_SERVER = [MODULE_MAIN, "api", "grpc", "-m", "flows_pipeline.definitions"]
# (sys.argv, a main process, the multiprocessing target it was started with), and whether it runs steps
PROCESSES = {
    "cli materialize": (MATERIALIZE, True, None, True),
    "cli job execute": ([DAGSTER, "job", "execute", "-m", "flows_pipeline.definitions"], True, None, True),
    "api execute_run": ([MODULE_MAIN, "api", "execute_run", "{}"], True, None, True),
    # the process a code server spawns for a run the daemon or the webserver launched (its argv: the server's)
    "code server's run worker": (CODE_SERVER, False, "start_run_in_subprocess", True),
    "code server": (CODE_SERVER, True, None, False),
    "webserver": ([str(Path(sys.executable).with_name("dagster-webserver")), "-m", "x"], True, None, False),
    "daemon": ([str(Path(sys.executable).with_name("dagster-daemon")), "run"], True, None, False),
    # a step spawned (start_method: spawn) by a CLI run inherits the CLI's argv
    "spawned step": (MATERIALIZE, False, None, False),
    "forkserver": (["-c", "--multiprocessing-fork"], False, None, False),
    "pytest": ([str(Path(sys.executable).with_name("pytest")), "asset", "materialize"], True, None, False),
}


@pytest.mark.parametrize("process", PROCESSES)
def test_only_the_processes_that_run_steps_start_the_step_server(process):
    argv, is_main, target, runs_steps = PROCESSES[process]
    assert orchestrates_steps(argv, is_main, target) is runs_steps


def _forkserver_after_importing_definitions(argv: list[str], **env: str) -> str:
    """The forkserver's command line once a process with `argv` imported the definitions ('' if none runs)."""
    probe = (
        f"import sys; sys.argv = {argv!r}\n"
        "import flows_pipeline.definitions\n"
        "from multiprocessing import forkserver\n"
        "pid = forkserver._forkserver._forkserver_pid\n"
        "print(open(f'/proc/{pid}/cmdline').read().replace(chr(0), ' ') if pid else '')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_cli_run_starts_the_preloading_forkserver_as_it_imports_the_project_and_a_code_server_does_not():
    started = _forkserver_after_importing_definitions(MATERIALIZE)
    assert "forkserver" in started and "flows_pipeline.orchestration.step_preload" in started, started
    assert _forkserver_after_importing_definitions(CODE_SERVER) == ""
    assert _forkserver_after_importing_definitions(MATERIALIZE, FLOWS_EARLY_STEP_SERVER="false") == ""
    assert _forkserver_after_importing_definitions(MATERIALIZE, FLOWS_EXECUTOR="celery") == ""  # steps on workers


def test_what_the_forkserver_preloads_is_frozen_out_of_the_steps_garbage_collections():
    """gc.freeze after the preload: a collection in a forked step skips what it inherited, so it does not
    copy those pages (a long chunk step's PSS would grow by them otherwise)."""
    code = "import gc, flows_pipeline.orchestration.step_preload; print(gc.get_freeze_count(), len(gc.get_objects()))"
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=True)
    frozen, collectable = (int(n) for n in done.stdout.split())
    assert frozen > 100_000, done.stdout  # the project, Dagster, Arrow's and the client's Python objects
    assert collectable < 1_000, done.stdout  # gc.get_objects leaves the frozen out: nothing for a collection
