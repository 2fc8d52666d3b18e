"""The production instance (deploy/dagster.yaml) on the suite's own PostgreSQL: its limits read
back as configured, Dagster's pool bug on PostgreSQL and the README's workaround, and the two
systemd units' own commands serving a backfill that lands in Elasticsearch.

The stale-run recovery and the deletion of expired runs are tested on this instance by the same
tests as on SQLite, parametrized over both: test_stale_runs.py (an earlier boot's run marked
failed and its slots freed, then the next hour published through the CLI) and test_housekeeping.py
(the retention job's deleted runs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy.exc
import yaml
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.test_utils import create_run_for_test
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from flows_pipeline.hour import hour_of
from flows_pipeline.orchestration.concurrency import ES_BULK_POOL
from flows_pipeline_tests.orchestration.test_operations import (
    BACKFILL_GOING_WELL,
    BACKFILL_STATUS,
    LAUNCH_BACKFILL,
    graphql,
    wait_for_runs,
)
from flows_pipeline_tests.postgres import PRODUCTION_INSTANCE, OwnPostgres, production_instance
from flows_pipeline_tests.support import PROJECT, Project, free_port, max_overlap, wait_for_dagster_ui
from flows_pipeline_tests.test_deploy_units import EXEC_START, INSTALL

SHIPPED = yaml.safe_load(PRODUCTION_INSTANCE.read_text())
ASSETS = ("raw_flows", "flow_table", "flow_quarantine", "flow_index", "flow_summary")
BACKFILL = ["2021-10-29-01:00", "2021-10-29-02:00"]  # two runs of two chunk steps each: more than the pool
ROWS = 4000


@pytest.fixture
def pg_home(tmp_path: Path, own_postgres: OwnPostgres) -> tuple[Path, dict[str, str]]:
    home = tmp_path / "dagster_home"
    return home, own_postgres.dagster_home(home)


def test_the_production_instance_is_postgres_with_the_limits_it_configures(pg_home):
    home, env = pg_home
    with production_instance(home, env) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)

        concurrency = SHIPPED["concurrency"]
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == concurrency["pools"]["default_limit"] == 2
        assert config.pool_config.pool_granularity.value == concurrency["pools"]["granularity"] == "op"
        assert config.run_queue_config.max_concurrent_runs == concurrency["runs"]["max_concurrent_runs"] == 4
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert instance.run_retries_max_retries == SHIPPED["run_retries"]["max_retries"]
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 30
        assert "MONITORING" in instance.get_required_daemon_types()
        sensor = instance.get_tick_retention_settings(InstigatorType.SENSOR)
        assert (sensor[TickStatus.SKIPPED], sensor[TickStatus.SUCCESS]) == (2, 30)

        # a fresh database: the pool gets the configured limit when first used, as a step's claim does
        assert instance.event_log_storage.get_concurrency_info(ES_BULK_POOL).slot_count == 0
        assert instance.event_log_storage.initialize_concurrency_limit_to_default(ES_BULK_POOL)
        info = instance.event_log_storage.get_concurrency_info(ES_BULK_POOL)
        assert (info.limit, info.slot_count, info.using_default_limit) == (2, 2, True)
        runs = [create_run_for_test(instance, status=DagsterRunStatus.STARTED).run_id for _ in range(3)]
        claims = [instance.event_log_storage.claim_concurrency_slot(ES_BULK_POOL, r, "index_chunk[c0]") for r in runs]
        assert [claim.is_claimed for claim in claims] == [True, True, False]


def _with_default_limit(home: Path, limit: int) -> None:
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    config["concurrency"]["pools"]["default_limit"] = limit
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


def test_a_changed_default_limit_is_applied_to_an_existing_sqlite_instance(tmp_path):
    """The behaviour PostgreSQL should have (next test): the pool follows dagster.yaml."""
    (tmp_path / "dagster.yaml").write_text((PROJECT / "dagster_home" / "dagster.yaml").read_text())
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        instance.event_log_storage.initialize_concurrency_limit_to_default(ES_BULK_POOL)
    _with_default_limit(tmp_path, 3)
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        instance.event_log_storage.initialize_concurrency_limit_to_default(ES_BULK_POOL)
        assert instance.event_log_storage.get_concurrency_info(ES_BULK_POOL).slot_count == 3


def test_on_postgres_a_changed_default_limit_fails_dagster_33552_and_the_cli_sets_the_pool(pg_home):
    """dagster-io/dagster#33552, in Dagster 1.13.27: once the pool's row exists, re-initializing it
    to dagster.yaml's default (what a step's claim and the run queue do when the configured
    default differs from the pool's, or when two first claims race) fails with
    InFailedSqlTransaction on PostgreSQL. The README's workaround, `dagster instance concurrency
    set flows_es_bulk N`, sets the pool by hand: it no longer follows the default, so nothing
    re-initializes it. When this test fails at `pytest.raises`, Dagster has fixed the bug."""
    home, env = pg_home
    with production_instance(home, env) as instance:
        assert instance.event_log_storage.initialize_concurrency_limit_to_default(ES_BULK_POOL)  # a fresh pool: fine
    _with_default_limit(home, 3)
    with production_instance(home, env) as instance:
        with pytest.raises(sqlalchemy.exc.InternalError, match="InFailedSqlTransaction"):
            instance.event_log_storage.initialize_concurrency_limit_to_default(ES_BULK_POOL)
        assert instance.event_log_storage.get_concurrency_info(ES_BULK_POOL).slot_count == 2  # not applied

    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [str(dagster), "instance", "concurrency", "set", ES_BULK_POOL, "3"],
        env={**os.environ, **env, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with production_instance(home, env) as instance:
        info = instance.event_log_storage.get_concurrency_info(ES_BULK_POOL)
        assert (info.limit, info.slot_count, info.using_default_limit) == (3, 3, False)


def _unit_command(name: str, port: int) -> list[str]:
    """The unit's ExecStart with this checkout as the install folder, this venv's commands, and a port."""
    command = [word.replace(f"{INSTALL}/.venv/bin", str(Path(sys.executable).parent)) for word in EXEC_START[name]]
    command = [word.replace(INSTALL, str(PROJECT)) for word in command]
    return [str(port) if word == "3000" else word for word in command]


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the unit's whole process group (systemd's control group), SIGKILL after 30 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_units_commands_serve_a_backfill_on_postgres_within_the_pool(pg_project: Project, es_client):
    """dagster-webserver and dagster-daemon started with the units' own ExecStart (paths of this
    checkout) and environment: a 2-hour backfill launched through the webserver is queued, run by
    the daemon on PostgreSQL, published with every row, and never had more chunk steps loading at
    once than the pool allows; every slot is free at the end."""
    project = pg_project
    project.env |= {"FLOWS_SYNTHETIC_ROWS": str(ROWS)}
    port = free_port()
    logs = {name: project.home / f"{name}.log" for name in EXEC_START}
    processes = {}

    def start(name: str) -> None:
        with open(logs[name], "w") as log:
            processes[name] = subprocess.Popen(
                _unit_command(name, port),
                cwd=PROJECT,  # WorkingDirectory
                env=project.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    try:
        url, webserver = f"http://127.0.0.1:{port}", "flows-dagster-webserver.service"
        start(webserver)
        wait_for_dagster_ui(url, processes[webserver], log=logs[webserver])
        params = {"partitionNames": BACKFILL, "assetSelection": [{"path": [asset]} for asset in ASSETS]}
        launched = graphql(url, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        # the daemon after the backfill, as after a restart: its backfill loop (every 30 s, Dagster's fixed
        # interval) takes the backfill at its first iteration instead of up to 30 s later
        for name in EXEC_START:
            if name != webserver:
                start(name)
        try:  # the runs, not the backfill daemon's next iteration (up to 30 s later) that marks it done
            wait_for_runs(project, BACKFILL, 600)
        except AssertionError as late:
            raise AssertionError(
                f"{late}; daemon log:\n{logs['flows-dagster-daemon.service'].read_text()[-4000:]}"
            ) from None
        status = graphql(url, BACKFILL_STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"]["status"]
        assert status in BACKFILL_GOING_WELL, status
        with project.instance() as instance:
            assert {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR"} <= set(instance.get_daemon_heartbeats())
    finally:
        for process in processes.values():
            _stop(process)

    with project.instance() as instance:
        runs = [r for r in instance.get_run_records() if r.dagster_run.tags.get("dagster/partition") in BACKFILL]
        assert sorted(r.dagster_run.tags["dagster/partition"] for r in runs) == BACKFILL
        assert {r.dagster_run.status for r in runs} == {DagsterRunStatus.SUCCESS}
        assert instance.event_log_storage.get_concurrency_info(ES_BULK_POOL).claimed_slots == []
    for hour in BACKFILL:
        assert es_client.count(index=f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of(hour).label}")["count"] == ROWS
    chunk_spans = [
        span
        for r in runs
        for key, span in project.step_intervals(r.dagster_run.run_id).items()
        if key.startswith("flow_index.index_chunk[")
    ]
    assert chunk_spans and max_overlap(chunk_spans) <= SHIPPED["concurrency"]["pools"]["default_limit"]
