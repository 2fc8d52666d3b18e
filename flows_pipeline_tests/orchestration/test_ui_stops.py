"""`make ui` stops on Ctrl-C within 10 s and leaves no process behind (scripts/ui.py)."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

from flows_pipeline_tests.support import PROJECT, free_port, wait_for_dagster_ui

STOP_WITHIN_S = 10


def test_make_ui_runs_the_wrapper():
    recipe = (PROJECT / "Makefile").read_text().split("\nui:", 1)[1].split("\n\n", 1)[0]
    assert "scripts/ui.py -w workspace.yaml" in recipe and "dagster dev" not in recipe


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_ui_stops_within_10_s_leaving_no_process(tmp_path, stop):
    """Started as a background job of a script is (SIGINT ignored on entry, which made Dagster ignore
    SIGTERM as well), with its webserver, daemon and code servers up; then Ctrl-C (SIGINT to the
    group), SIGTERM, or the terminal closing (SIGHUP)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    url = f"http://127.0.0.1:{free_port()}"
    ui = subprocess.Popen(
        [sys.executable, "scripts/ui.py", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", url.rsplit(":", 1)[1]],
        cwd=PROJECT,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    tree: list[psutil.Process] = []
    try:
        wait_for_dagster_ui(url, ui)
        tree = [psutil.Process(ui.pid), *psutil.Process(ui.pid).children(recursive=True)]
        names = " ".join(" ".join(p.cmdline()[1:4]) for p in tree)
        assert "dagster_webserver" in names and "dagster._daemon" in names and "code-server" in names, names

        started = time.monotonic()
        os.killpg(ui.pid, stop)
        _, alive = psutil.wait_procs(tree, timeout=STOP_WITHIN_S)
        took = time.monotonic() - started
        assert not alive, f"still running {took:.1f} s after {stop.name}: {[p.cmdline()[:4] for p in alive]}"
        assert ui.wait(timeout=1) == 0
    finally:
        for process in tree or [psutil.Process(ui.pid)]:  # the test failed: leave nothing behind
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
