"""Slots of runs whose process is gone are freed; a live run's slots, or a run this host cannot
judge, never are (no Elasticsearch, no daemon: real processes, and each test on both shipped
instances: dagster_home/dagster.yaml on SQLite and deploy/dagster.yaml on PostgreSQL)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from dagster import DagsterEvent, DagsterEventType, DagsterInstance, DagsterRunStatus, build_sensor_context
from dagster._core.test_utils import create_run_for_test

from flows_pipeline.orchestration.concurrency import ES_BULK_POOL
from flows_pipeline.orchestration.stale_runs import (
    HAND_COMMAND,
    RUN_PROCESS_TAG,
    ProcessState,
    RunProcess,
    flows_dead_runs_sensor,
    free_by_hand,
    free_slots_of_dead_runs,
    main,
    record_run_process,
)
from flows_pipeline_tests.support import PROJECT

LOG = logging.getLogger(__name__)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def instance(request, tmp_path: Path, monkeypatch) -> Iterator[DagsterInstance]:
    """A shipped instance configuration in a fresh DAGSTER_HOME (and, on PostgreSQL, a fresh
    database, its connection in the environment for the test's whole length, as the units give
    it), with room for every test run."""
    if request.param == "postgres":
        for key, value in request.getfixturevalue("own_postgres").dagster_home(tmp_path).items():
            monkeypatch.setenv(key, value)
    else:
        shutil.copy(PROJECT / "dagster_home" / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        instance.event_log_storage.set_concurrency_slots(ES_BULK_POOL, 20)
        yield instance


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(["sleep", "300"])
    yield process
    process.kill()
    process.wait()


def _run_holding_slots(instance: DagsterInstance, process: RunProcess | None) -> str:
    tags = {RUN_PROCESS_TAG: process.to_tag()} if process else {}
    run_id = create_run_for_test(instance, status=DagsterRunStatus.STARTED, tags=tags).run_id
    for step in ("index_chunk[c0]", "index_chunk[c1]"):
        assert instance.event_log_storage.claim_concurrency_slot(ES_BULK_POOL, run_id, step).is_claimed
    return run_id


def _holders(instance: DagsterInstance) -> dict[str, int]:
    held: dict[str, int] = {}
    for slot in instance.event_log_storage.get_concurrency_info(ES_BULK_POOL).claimed_slots:
        held[slot.run_id] = held.get(slot.run_id, 0) + 1
    return held


def _dead_process() -> RunProcess:
    process = subprocess.Popen(["sleep", "300"])
    recorded = RunProcess.of(process.pid)
    process.kill()
    process.wait()
    assert recorded is not None
    return recorded


def test_a_process_is_gone_only_when_its_pid_is_free_a_zombie_or_another_process(sleeper):
    live = RunProcess.of(sleeper.pid)
    assert live is not None and live.state() is ProcessState.RUNNING
    assert _dead_process().state() is ProcessState.GONE
    assert replace(live, start_ticks=live.start_ticks - 1).state() is ProcessState.GONE  # the pid was reused
    assert replace(live, host="another-host").state() is ProcessState.OTHER_HOST
    # recorded on this host before a reboot: whatever runs under that pid now is another process
    assert replace(live, boot_id="an-earlier-boot").state() is ProcessState.EARLIER_BOOT
    sleeper.send_signal(signal.SIGKILL)  # killed, not yet waited for: a zombie
    for _ in range(100):
        if live.state() is ProcessState.GONE:
            break
        time.sleep(0.05)
    assert live.state() is ProcessState.GONE
    assert RunProcess.from_tag(live.to_tag()) == live
    assert RunProcess.from_tag("not json") is None


def test_only_the_slots_of_runs_whose_process_is_gone_from_this_host_are_freed(instance, sleeper):
    live_process = RunProcess.of(sleeper.pid)
    assert live_process is not None
    live = _run_holding_slots(instance, live_process)
    also_live = _run_holding_slots(instance, RunProcess.of(os.getpid()))
    elsewhere = _run_holding_slots(instance, replace(_dead_process(), host="another-host"))
    unrecorded = _run_holding_slots(instance, None)
    dead = _run_holding_slots(instance, _dead_process())
    reused_pid = _run_holding_slots(instance, replace(live_process, start_ticks=live_process.start_ticks + 1))
    own = _run_holding_slots(instance, _dead_process())  # the caller's own run is never judged

    freed = free_slots_of_dead_runs(instance, own, LOG)

    assert sorted(freed) == sorted([dead, reused_pid])
    assert _holders(instance) == {live: 2, also_live: 2, elsewhere: 2, unrecorded: 2, own: 2}
    for run_id in (live, also_live, elsewhere, unrecorded, own):
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.STARTED
    for run_id in freed:
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
        (failure,) = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records
        assert "process (pid" in failure.event_log_entry.dagster_event.message
        assert "is gone" in failure.event_log_entry.dagster_event.message


def test_slots_freed_by_a_dead_run_go_to_the_steps_waiting_for_them(instance):
    instance.event_log_storage.set_concurrency_slots(ES_BULK_POOL, 2)
    dead = _run_holding_slots(instance, _dead_process())
    waiting = create_run_for_test(instance, status=DagsterRunStatus.STARTED).run_id
    assert not instance.event_log_storage.claim_concurrency_slot(ES_BULK_POOL, waiting, "index_chunk[c0]").is_claimed

    assert free_slots_of_dead_runs(instance, waiting, LOG) == [dead]

    assert instance.event_log_storage.claim_concurrency_slot(ES_BULK_POOL, waiting, "index_chunk[c0]").is_claimed


def test_by_hand_a_run_of_another_host_is_freed_but_a_live_run_of_this_host_is_refused(instance, sleeper):
    live = _run_holding_slots(instance, RunProcess.of(sleeper.pid))
    elsewhere = _run_holding_slots(instance, replace(_dead_process(), host="another-host"))

    with pytest.raises(SystemExit, match="still runs here"):
        free_by_hand(instance, live)
    free_by_hand(instance, elsewhere)

    assert _holders(instance) == {live: 2}
    assert instance.get_run_by_id(elsewhere).status == DagsterRunStatus.FAILURE


def test_a_run_records_its_process_only_when_it_is_an_ancestor_of_the_step(instance, sleeper):
    def started_by(pid: int) -> str:
        run = create_run_for_test(instance, status=DagsterRunStatus.STARTED)
        start = DagsterEvent(DagsterEventType.RUN_START.value, run.job_name, pid=pid)
        instance.report_dagster_event(start, run.run_id)
        return run.run_id

    ours = started_by(os.getppid())
    recorded = record_run_process(instance, ours, LOG)
    assert recorded == RunProcess.of(os.getppid(), ours)
    assert RunProcess.from_tag(instance.get_run_by_id(ours).tags[RUN_PROCESS_TAG]) == recorded

    not_ours = started_by(sleeper.pid)  # a process of this host, but not the one running this step
    assert record_run_process(instance, not_ours, LOG) is None
    assert RUN_PROCESS_TAG not in instance.get_run_by_id(not_ours).tags


def test_the_shipped_instance_has_the_daemon_free_the_slots_of_runs_that_ended(instance):
    # dagster/_daemon/monitoring/concurrency.py frees them; the monitoring daemon runs only when enabled
    assert "MONITORING" in instance.get_required_daemon_types()
    assert 0 < instance.run_monitoring_settings["free_slots_after_run_end_seconds"] <= 60


def test_the_hand_command_frees_one_named_run_or_every_dead_run_of_this_host(instance, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    caplog.set_level(logging.INFO)
    elsewhere = _run_holding_slots(instance, replace(_dead_process(), host="another-host"))
    dead = _run_holding_slots(instance, _dead_process())
    live = _run_holding_slots(instance, RunProcess.of(os.getpid()))

    main([])
    assert _holders(instance) == {elsewhere: 2, live: 2}
    assert f"{HAND_COMMAND} {elsewhere}" in caplog.text  # the run it cannot judge is named, with the command
    main([elsewhere])
    assert _holders(instance) == {live: 2}
    assert instance.get_run_by_id(dead).status == instance.get_run_by_id(elsewhere).status == DagsterRunStatus.FAILURE


@pytest.mark.parametrize("home", ["project", pytest.param("pg_project", marks=pytest.mark.postgres)])
def test_a_run_of_an_earlier_boot_holding_the_whole_pool_lets_the_next_hour_complete(home, request, es_client):
    """The issue's reboot: a run recorded on this host under an earlier boot holds both slots of
    the shipped pool; the next hour's CLI run marks it failed, takes the slots and publishes.
    On SQLite (dagster_home/) and on the production instance (deploy/, PostgreSQL)."""
    project = request.getfixturevalue(home)
    with project.instance() as instance:
        assert instance.event_log_storage.get_concurrency_info(ES_BULK_POOL).slot_count == 0  # not yet set
        instance.event_log_storage.set_concurrency_slots(ES_BULK_POOL, 2)  # dagster.yaml's default_limit
        # its pid is a live process now (this one): pids of an earlier boot mean nothing
        before_reboot = replace(RunProcess.of(os.getpid()), boot_id="an-earlier-boot")
        stranded = _run_holding_slots(instance, before_reboot)

    result = project.materialize("2021-10-28-07:00", extra_env={"FLOWS_SYNTHETIC_ROWS": "5000"})

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert es_client.count(index=f"{project.env['FLOWS_INDEX_PREFIX']}-2021.10.28-07")["count"] == 5000
    with project.instance() as instance:
        assert instance.get_run_by_id(stranded).status == DagsterRunStatus.FAILURE
        (failure,) = instance.get_records_for_run(stranded, of_type=DagsterEventType.RUN_FAILURE).records
        assert "earlier boot" in failure.event_log_entry.dagster_event.message
        assert _holders(instance) == {}


def test_the_dead_runs_sensor_fails_runs_whose_process_is_gone_holding_slots_or_not(instance, sleeper):
    died_before_its_load = create_run_for_test(
        instance, status=DagsterRunStatus.STARTED, tags={RUN_PROCESS_TAG: _dead_process().to_tag()}
    ).run_id
    rebooted = _run_holding_slots(instance, replace(RunProcess.of(sleeper.pid), boot_id="an-earlier-boot"))
    live = _run_holding_slots(instance, RunProcess.of(sleeper.pid))
    # a re-execution copies its parent's tags: the process there is the parent's, not its own
    copied = create_run_for_test(
        instance, status=DagsterRunStatus.STARTED, tags={RUN_PROCESS_TAG: _dead_process_of_run("parent").to_tag()}
    ).run_id

    outcome = flows_dead_runs_sensor(build_sensor_context(instance=instance))

    assert sorted(outcome.skip_message.split(": ")[1].split(", ")) == sorted([died_before_its_load, rebooted])
    for run_id in (died_before_its_load, rebooted):
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
    for run_id in (live, copied):
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.STARTED
    assert _holders(instance) == {live: 2}
    again = flows_dead_runs_sensor(build_sensor_context(instance=instance))
    assert again.skip_message == "no run in progress has lost its process"


def _dead_process_of_run(run_id: str) -> RunProcess:
    return replace(_dead_process(), run_id=run_id)
