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
ORCHESTRATING = [
    [DAGSTER, "asset", "materialize", "-m", "flows_pipeline.definitions", "--select", "*"],
    [DAGSTER, "job", "execute", "-m", "flows_pipeline.definitions", "-j", "flows_hourly_job"],
    [MODULE_MAIN, "api", "execute_run", "{}"],  # the daemon's run launcher: python -m dagster api execute_run
]
NOT_ORCHESTRATING = [
    [DAGSTER, "api", "grpc", "-m", "flows_pipeline.definitions"],  # a code server
    [str(Path(sys.executable).with_name("dagster-webserver")), "-m", "flows_pipeline.definitions"],
    [str(Path(sys.executable).with_name("dagster-daemon")), "run"],
    ["-c", "asset", "materialize"],  # a forkserver or spawned step: `python -c ...`
    [str(Path(sys.executable).with_name("pytest")), "asset", "materialize"],
]


@pytest.mark.parametrize("argv", ORCHESTRATING + NOT_ORCHESTRATING, ids=lambda argv: " ".join(argv[1:3]) or argv[0])
def test_only_the_processes_that_run_steps_are_told_to_orchestrate(argv):
    assert orchestrates_steps(argv) is (argv in ORCHESTRATING)


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
    started = _forkserver_after_importing_definitions(ORCHESTRATING[0])
    assert "forkserver" in started and "flows_pipeline.orchestration.step_preload" in started, started
    assert _forkserver_after_importing_definitions(NOT_ORCHESTRATING[0]) == ""
    assert _forkserver_after_importing_definitions(ORCHESTRATING[0], FLOWS_EARLY_STEP_SERVER="false") == ""
