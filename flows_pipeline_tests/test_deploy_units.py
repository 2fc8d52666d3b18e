"""The production deployment's files in deploy/: the systemd units (checked by `systemd-analyze
verify` where it exists, and read key by key always), the environment file's example, and the
production dagster.yaml, which may differ from dagster_home/dagster.yaml only in its storage."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows_pipeline_tests.support import PROJECT

DEPLOY = PROJECT / "deploy"
UNITS = ("flows-dagster-webserver.service", "flows-dagster-daemon.service")
INSTALL = "/opt/flows_pipeline"
ENV_FILE = "/etc/flows_pipeline/flows_pipeline.env"
DATA_ENV = {
    "DAGSTER_HOME": "/var/lib/flows_pipeline/dagster_home",
    "FLOWS_STORAGE_ROOT": "/var/lib/flows_pipeline/tables",
}
EXEC_START = {
    "flows-dagster-webserver.service": [
        f"{INSTALL}/.venv/bin/dagster-webserver", "-w", f"{INSTALL}/workspace.yaml", "-h", "127.0.0.1", "-p", "3000",
    ],
    "flows-dagster-daemon.service": [f"{INSTALL}/.venv/bin/dagster-daemon", "run", "-w", f"{INSTALL}/workspace.yaml"],
}  # fmt: skip
# the README's variables that are not the deployment's: the local Elasticsearch node, cluster, s3proxy,
# redis and workers
LOCAL_ONLY = {"ES_PORT", "ES_HEAP", "ES_JAVA_HOME", "ES_VERSION", "PG_PORT", "S3_PORT", "REDIS_PORT"}
LOCAL_ONLY |= {"WORKERS", "WORKER_CONCURRENCY"}


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value, in order. Not configparser: systemd repeats keys
    (Environment=, After=), which configparser's strict mode refuses and its lax one overwrites."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"{path.name}: not a unit file line: {line}"
        key, value = (part.strip() for part in line.split("=", 1))
        current.setdefault(key, []).append(value)
    return sections


@pytest.mark.parametrize("name", UNITS)
def test_a_unit_restarts_always_as_flows_with_the_data_outside_the_checkout(name):
    unit = read_unit(DEPLOY / "systemd" / name)
    service = unit["Service"]
    assert service["Restart"] == ["always"]
    assert unit["Unit"]["StartLimitIntervalSec"] == ["0"]  # restarts are never given up
    assert service["User"] == ["flows"] and service["Group"] == ["flows"]
    assert service["WorkingDirectory"] == [INSTALL]
    assert service["EnvironmentFile"] == [ENV_FILE]
    assert dict(value.split("=", 1) for value in service["Environment"]) == DATA_ENV
    assert service["ExecStart"] == [" ".join(EXEC_START[name])]
    after = " ".join(unit["Unit"]["After"]).split()
    assert {"network-online.target", "postgresql.service"} <= set(after)
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("name", UNITS)
def test_a_unit_starts_a_command_of_the_project_with_options_it_has(name):
    """The ExecStart command is a console script of this venv, and each of its options is one
    the command's --help lists: a renamed option would fail the service at every start."""
    command = EXEC_START[name]
    installed = Path(sys.executable).parent / Path(command[0]).name
    assert installed.exists(), installed
    helped = [str(installed), *[word for word in command[1:2] if not word.startswith("-")], "--help"]
    usage = subprocess.run(helped, capture_output=True, text=True, timeout=120, check=True).stdout
    for option in (word for word in command[1:] if word.startswith("-")):
        assert re.search(rf"(^|[\s,]){re.escape(option)}[\s,]", usage), f"{option} is not an option of {helped}"


def test_systemd_analyze_verifies_the_units(tmp_path):
    """`systemd-analyze verify` in a temporary root: the system's own units (sysinit.target and
    the others a service is ordered against), the two units installed as the README says, and an
    executable at each ExecStart path; then it must print nothing at all. Without the executables
    it prints only `Command … is not executable`; an unknown key or a bad value is printed as a
    warning with exit status 0, so its output is what is checked, not only its status."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze on this machine: the units are checked by reading them only")
    (tmp_path / "usr" / "lib" / "systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", tmp_path / "usr" / "lib" / "systemd" / "system", symlinks=True)
    installed = tmp_path / "etc" / "systemd" / "system"
    installed.mkdir(parents=True)
    for name in UNITS:
        shutil.copy(DEPLOY / "systemd" / name, installed / name)

    def verify() -> subprocess.CompletedProcess:
        return subprocess.run(
            [analyze, "verify", f"--root={tmp_path}", *UNITS], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )

    missing = verify()
    assert missing.returncode != 0
    complaints = (missing.stdout + missing.stderr).strip().splitlines()
    assert complaints and all("is not executable: No such file or directory" in line for line in complaints), complaints
    for command in EXEC_START.values():
        stub = tmp_path / command[0].lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    done = verify()
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def _environment_file() -> dict[str, str]:
    """Every variable of the example, set or commented out (`# VAR=value`)."""
    found = {}
    for line in (DEPLOY / "flows_pipeline.env.example").read_text().splitlines():
        if match := re.fullmatch(r"(?:# )?([A-Z][A-Z0-9_]*)=(.*)", line.strip()):
            found[match.group(1)] = match.group(2)
    return found


def test_the_environment_example_names_every_variable_of_the_readme_and_of_the_instance():
    example = _environment_file()
    readme = (PROJECT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", "\n".join(re.findall(r"^\| [^|]+\|", readme, re.M))))
    assert documented, "no variables found in the README's configuration table"
    assert documented - LOCAL_ONLY - set(example) == set()
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    postgres_db = instance["storage"]["postgres"]["postgres_db"]
    pg_vars = {field["env"] for field in postgres_db.values() if isinstance(field, dict)}
    assert postgres_db["scheme"] == "postgresql+psycopg2"  # SQLAlchemy 2.1's default driver is psycopg 3
    assert pg_vars == {f"DAGSTER_PG_{name}" for name in ("HOST", "PORT", "DB", "USERNAME", "PASSWORD")}
    assert pg_vars <= {key for key, _ in example.items()}
    assert set(DATA_ENV) <= set(example)  # commented: the units set them


def test_the_production_instance_differs_from_the_local_one_only_in_its_storage():
    local = yaml.safe_load((PROJECT / "dagster_home" / "dagster.yaml").read_text())
    production = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert "storage" not in local  # SQLite in DAGSTER_HOME, Dagster's default
    assert set(production["storage"]) == {"postgres"}
    assert {key: value for key, value in production.items() if key != "storage"} == local
