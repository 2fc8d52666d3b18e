"""make ui: `dagster dev` that Ctrl-C (SIGINT), SIGTERM or a closed terminal (SIGHUP) stops within
STOP_TIMEOUT_S, leaving no process.

Why a wrapper: a shell that starts a job in the background makes it ignore SIGINT, and Dagster maps
SIGTERM to SIGINT's handler, so such a `dagster dev` ignored both (measured: still running after
60 s, with its webserver, daemon and code servers). Here `dagster dev` gets default handlers and a
process group of its own (so the terminal's Ctrl-C reaches only the wrapper, which must therefore
also pass on SIGHUP); on any of the three the wrapper interrupts that whole group (runs in
progress are told to stop as well), waits, and kills whatever is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_TIMEOUT_S = 5.0  # then SIGKILL: the whole stop stays well under 10 s, also on a busy machine


def _default_signals() -> None:  # in the child, before exec: Python then raises KeyboardInterrupt on SIGINT
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    return _signal_group(pgid, 0)


def main(args: list[str]) -> int:
    stop_requested: list[int] = []
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: stop_requested.append(signum))
    dagster = Path(sys.executable).parent / "dagster"
    dev = subprocess.Popen([str(dagster), "dev", *args], start_new_session=True, preexec_fn=_default_signals)
    while dev.poll() is None and not stop_requested:
        time.sleep(0.2)
    if stop_requested:
        print(f"ui.py: stopping dagster dev (process group {dev.pid})", file=sys.stderr, flush=True)
        _signal_group(dev.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _group_alive(dev.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
            dev.poll()  # reap dagster dev itself, so the group can empty
        if _signal_group(dev.pid, signal.SIGKILL):
            print(f"ui.py: killed what was left after {STOP_TIMEOUT_S:.0f} s", file=sys.stderr, flush=True)
    dev.wait()
    return 0 if stop_requested else dev.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
