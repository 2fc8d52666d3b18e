"""The test suite's PostgreSQL: a cluster of its own in .pg/test, on a free port, started and
stopped by its PID with the project's scripts/postgres.sh (so `.ci/run`'s exit trap stops it
whatever happened to the session), and Dagster instances on it configured by deploy/dagster.yaml.

Each instance gets a database of its own (`fresh_database`): runs, event logs and pool slots of
one test never meet another's, as with a SQLite instance in a fresh DAGSTER_HOME.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest
from dagster import DagsterInstance

from flows_pipeline_tests.support import PROJECT, run_script, script_exports

PG_SH = PROJECT / "scripts" / "postgres.sh"
TEST_CLUSTER = PROJECT / ".pg" / "test"
PRODUCTION_INSTANCE = PROJECT / "deploy" / "dagster.yaml"


def postgres_bindir() -> Path | None:
    """Where the server binaries are, as scripts/postgres.sh finds them; None when there are none."""
    found = shutil.which("pg_config")
    candidates = []
    if found:
        done = subprocess.run([found, "--bindir"], capture_output=True, text=True)
        candidates.append(Path(done.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    return next((path for path in candidates if (path / "initdb").exists()), None)


def missing_tool(what: str, install: str = "`make system-packages` as root installs it") -> None:
    """A tool a test needs is not installed: skipped on a developer's machine, but a failure in CI
    (`CI` set, as `.ci/run` does), where `make setup` installs it and its absence is a broken setup."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI: `make setup` should have installed it")
    pytest.skip(f"{what} is not installed here ({install})")


def pg_sh(cluster: Path, port: int, *args: str) -> str:
    """Run scripts/postgres.sh on the cluster in `cluster`; its output, or a failure with its last lines."""
    return run_script(PG_SH, *args, env={**os.environ, "PG_DIR": str(cluster), "PG_PORT": str(port)}, timeout=180)


@dataclass(frozen=True)
class OwnPostgres:
    """A running cluster of scripts/postgres.sh; `env` is what `scripts/postgres.sh env` exports."""

    cluster: Path
    port: int
    env: dict[str, str] = field(repr=False)  # holds DAGSTER_PG_PASSWORD: never in a test's report

    @classmethod
    def up(cls, cluster: Path, port: int) -> OwnPostgres:
        """A fresh cluster in `cluster` on `port`: one left running by an earlier session is stopped
        (by its PID) and its data removed first."""
        pg_sh(cluster, port, "stop")
        shutil.rmtree(cluster, ignore_errors=True)
        pg_sh(cluster, port, "up")
        shell = {**os.environ, "PG_DIR": str(cluster), "PG_PORT": str(port)}
        return cls(cluster, port, script_exports(PG_SH, shell, ("DAGSTER_PG_",)))

    def stop(self) -> None:
        pg_sh(self.cluster, self.port, "stop")

    def fresh_database(self) -> dict[str, str]:
        """A new, empty database of the Dagster user: the DAGSTER_PG_* environment pointing at it."""
        name = f"flows_test_{uuid.uuid4().hex[:12]}"
        pg_sh(self.cluster, self.port, "createdb", name)
        return {**self.env, "DAGSTER_PG_DB": name}

    def dagster_home(self, home: Path) -> dict[str, str]:
        """`home` made a DAGSTER_HOME of the production instance (deploy/dagster.yaml, as installed)
        on a fresh database; returns the DAGSTER_PG_* variables that instance reads."""
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(PRODUCTION_INSTANCE, home / "dagster.yaml")
        return self.fresh_database()


def production_instance(home: Path, env: dict[str, str]) -> DagsterInstance:
    """The instance of `home` with `env` (DAGSTER_PG_*) in the environment while its config is read:
    the storage's connection is resolved then, once."""
    with mock.patch.dict(os.environ, env):
        return DagsterInstance.from_config(str(home))
