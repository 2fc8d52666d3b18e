"""The test suite's celery: a redis broker of its own in .redis/test on a free port (scripts/redis.sh) and
workers of a test's project in .workers/test (scripts/workers.sh), each started and stopped by its PID
(so `.ci/run`'s exit trap stops them whatever happened to the session)."""

from __future__ import annotations

import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

from flows_pipeline_tests.support import PROJECT, run_script, script_exports

REDIS_SH = PROJECT / "scripts" / "redis.sh"
WORKERS_SH = PROJECT / "scripts" / "workers.sh"
TEST_BROKER = PROJECT / ".redis" / "test"
TEST_WORKERS = PROJECT / ".workers" / "test"


def redis_found() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def _redis_env(folder: Path, port: int) -> dict[str, str]:
    return {**os.environ, "REDIS_DIR": str(folder), "REDIS_PORT": str(port)}


@dataclass(frozen=True)
class OwnBroker:
    """A running redis-server of scripts/redis.sh; `env` is what `scripts/redis.sh env` exports."""

    folder: Path
    port: int
    env: dict[str, str] = field(repr=False)  # the broker URL holds its password: never in a report

    @classmethod
    def up(cls, folder: Path, port: int) -> OwnBroker:
        """A fresh broker in `folder` on `port` (one left by an earlier session is stopped by its PID first)."""
        run_script(REDIS_SH, "stop", env=_redis_env(folder, port))
        run_script(REDIS_SH, "up", env=_redis_env(folder, port), timeout=60)
        return cls(folder, port, script_exports(REDIS_SH, _redis_env(folder, port), ("FLOWS_CELERY_",)))

    def stop(self) -> None:
        run_script(REDIS_SH, "stop", env=_redis_env(self.folder, self.port))


@dataclass
class Workers:
    """Celery workers w1..wN of one project (scripts/workers.sh), with the project's environment."""

    env: dict[str, str] = field(repr=False)
    folder: Path = TEST_WORKERS
    dagster_yaml: Path | None = None  # set: each worker has a DAGSTER_HOME of its own with this instance config

    def _sh(self, *args: str) -> str:
        env = {**self.env, "WORKERS_DIR": str(self.folder)}
        if self.dagster_yaml:
            env["WORKER_DAGSTER_YAML"] = str(self.dagster_yaml)
        return run_script(WORKERS_SH, *args, env=env, timeout=180)

    def up(self, workers: int = 2, concurrency: int = 2) -> None:
        self.stop()  # any left by an earlier test or session
        shutil.rmtree(self.folder, ignore_errors=True)
        self.env |= {"WORKERS": str(workers), "WORKER_CONCURRENCY": str(concurrency)}
        self._sh("up")

    def pids(self) -> dict[str, int]:
        """worker name (w1, ...) -> PID of its main process, for the running ones."""
        return {name: int(pid) for name, pid in (line.split() for line in self._sh("pids").splitlines())}

    def kill(self, name: str) -> None:
        """SIGKILL the worker and its pool's processes at once: the machine it stands for is lost."""
        os.killpg(self.pids()[name], signal.SIGKILL)

    def stop(self) -> None:
        self.env.setdefault("WORKER_STOP_TIMEOUT_S", "20")
        self._sh("stop")

    def log(self, name: str) -> str:
        path = self.folder / name / "worker.log"
        return path.read_text() if path.exists() else ""
