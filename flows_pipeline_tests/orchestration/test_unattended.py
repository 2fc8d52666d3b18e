"""Months unattended, in minutes: the cluster is down when the schedule's run loads an hour, and
comes up; with nobody acting, the hour is published exactly: the run and the daemon's two run
retries fail at once on the node that is not running, then the catch-up sensor's run, after its
backoff, loads it. The webhook is told once: of the last retry's failure (not of the two the daemon
retried). (The node is down from before the tick, not stopped once the run is seen: a run of a few
thousand flows can finish before a node stops. Nodes killed in the middle of a bulk load:
test_three_nodes.py.)

A real `dagster-daemon` on the project's workspace and shipped instance config, and a real
Elasticsearch node of the test's own, down from the start (its distribution unpacked, not started)
and started by scripts/es.sh once the retries have failed; stopped by its PID at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterRunStatus
from dagster._core.storage.tags import WILL_RETRY_TAG
from elasticsearch import Elasticsearch

from flows_pipeline.hour import hour_of
from flows_pipeline.orchestration.catch_up import CATCH_UP_REASON_TAG
from flows_pipeline.orchestration.schedule_lag import hour_due_at
from flows_pipeline_tests.alert_receivers import WebhookReceiver
from flows_pipeline_tests.support import PROJECT, free_port, make_project, run_script

ROWS = 3000
NODE_DIR = PROJECT / ".es" / "unattended"  # git-ignored; the distribution is unpacked there once


def es_sh(command: str, port: int, **settings: str) -> None:
    env = {**os.environ, "ES_DIR": str(NODE_DIR), "ES_PORT": str(port), "ES_HEAP": "512m", **settings}
    env.pop("ES_URL", None)
    run_script(PROJECT / "scripts" / "es.sh", command, env=env, timeout=300)


@pytest.fixture
def own_node():
    """The port of a node that is not running yet: the test starts it (es.sh up) when the cluster comes up."""
    port = free_port()
    es_sh("stop", port)  # a node an aborted earlier run left running in NODE_DIR, if any, before its data goes
    shutil.rmtree(NODE_DIR / "data", ignore_errors=True)
    es_sh("install", port)
    try:
        yield port
    finally:
        es_sh("stop", port, ES_STOP_TIMEOUT="15")  # its data is removed next: no need to wait for a flush
        shutil.rmtree(NODE_DIR / "data", ignore_errors=True)


def next_tick(now: datetime) -> tuple[int, datetime]:
    """A source lag that puts the schedule's next tick at the next minute (0-60 s from now), and that tick.

    The schedule is started before this is chosen, so the tick always comes after its start: a daemon
    that starts after the tick still launches it (Dagster's scheduler evaluates every tick since the
    schedule's start, the last of those it missed included), so the tick need not wait for the daemon."""
    tick = (now + timedelta(seconds=60)).replace(second=0, microsecond=0)
    return tick.minute, tick


def runs_of(project, hour: str) -> list:
    with project.instance() as instance:
        return [r for r in instance.get_run_records() if r.dagster_run.tags.get("dagster/partition") == hour]


def wait_until(what: str, check, timeout_s: float, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen in {timeout_s} s; daemon log:\n{log.read_text()[-4000:]}")


@pytest.mark.cluster
def test_the_cluster_down_during_the_scheduled_run_then_back_gets_the_hour_published_by_itself(
    own_node, tmp_path, index_prefix
):
    with WebhookReceiver() as webhook:
        run_unattended(own_node, tmp_path, index_prefix, webhook)


def run_unattended(own_node, tmp_path, index_prefix, webhook):
    # 1. the cluster is down before the schedule's tick: own_node has not started it
    project = make_project(tmp_path, index_prefix)
    project.env |= {
        "ES_URL": f"http://127.0.0.1:{own_node}",
        "FLOWS_SYNTHETIC_ROWS": str(ROWS),
        "FLOWS_CATCH_UP_HOURS": "1",
        "FLOWS_CATCH_UP_GRACE_MINUTES": "30",  # "missing" never: the schedule requests the hour
        "FLOWS_CATCH_UP_INTERVAL_SECONDS": "5",
        "FLOWS_CATCH_UP_BACKOFF_SECONDS": "10",
        "FLOWS_ALERT_WEBHOOK": webhook.url,  # the alert sensors start RUNNING when it is set
    }
    dagster = str(Path(sys.executable).parent / "dagster")
    for kind, name in (("schedule", "flows_hourly_job_schedule"), ("sensor", "flows_catch_up")):
        subprocess.run(
            [dagster, kind, "start", name, "-w", "workspace.yaml"],
            cwd=PROJECT,
            env=project.env,
            check=True,
            timeout=120,
        )
    # the schedule is started (with the default lag: its state records no tick time); the daemon loads
    # the definitions with the lag that puts the next tick shortly after now
    lag, tick = next_tick(datetime.now(UTC))
    hour = hour_due_at(tick, lag)
    project.env |= {
        "FLOWS_SOURCE_LAG_MINUTES": str(lag),
        "FLOWS_FIRST_HOUR": hour,  # the scheduled hour is the only partition the catch-up window can hold
    }
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=PROJECT,
            env=project.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # 1. the schedule's tick launches the hour's run, on the stopped cluster
        wait_until(f"the scheduled run of {hour}", lambda: runs_of(project, hour), 240, log)

        # 2. the run fails on the unreachable cluster, and so do both of the daemon's run retries
        def retries_exhausted():
            failed = [r.dagster_run for r in runs_of(project, hour) if r.dagster_run.status == DagsterRunStatus.FAILURE]
            return len(failed) >= 3 and failed[0].tags.get(WILL_RETRY_TAG) == "false"

        wait_until("the run and its two retries failed", retries_exhausted, 240, log)
        # 3. the cluster comes up; nobody touches Dagster
        es_sh("up", own_node)  # no run can succeed before it is healthy; if it never is, es.sh says why
        wait_until(
            f"a run of {hour} that succeeded",
            lambda: [r for r in runs_of(project, hour) if r.dagster_run.status == DagsterRunStatus.SUCCESS],
            300,
            log,
        )
        wait_until("the failure alert", lambda: webhook.bodies, 120, log)
    finally:
        os.killpg(daemon.pid, 15)
        daemon.wait(timeout=60)

    client = Elasticsearch(f"http://127.0.0.1:{own_node}", request_timeout=30)
    alias = f"{index_prefix}-{hour_of(hour).label}"
    client.indices.refresh(index=alias)
    assert client.count(index=alias)["count"] == ROWS
    runs = runs_of(project, hour)
    with project.instance() as instance:
        assert hour in instance.get_materialized_partitions(AssetKey("flow_index"))
    [published] = [r.dagster_run for r in runs if r.dagster_run.status == DagsterRunStatus.SUCCESS]
    scheduled = [r.dagster_run for r in runs if r.dagster_run.tags.get("dagster/schedule_name")]
    assert scheduled, "the first run was the schedule's"
    # the daemon's retries came at once and failed; the catch-up sensor's run, after its backoff, loaded it
    healed_by = published.tags.get(CATCH_UP_REASON_TAG)
    assert healed_by == "failed", published.tags
    assert len([r for r in runs if r.dagster_run.tags.get("dagster/parent_run_id")]) == 2, "both run retries ran"
    print(f"{hour}: {len(runs)} runs, published by {healed_by} (run {published.run_id})")
    failed = [r.dagster_run for r in runs if r.dagster_run.status == DagsterRunStatus.FAILURE]
    [alert] = [body["metadata"]["event_payload"] for body in webhook.bodies]
    assert (alert["event"], alert["hour"], alert["asset"]) == ("hour_failed", hour, "flow_index")
    assert alert["run_id"] == failed[0].run_id, "the alert is the last retry's, the one the daemon does not retry"
    assert "unreachable" in alert["error"] and "flows_catch_up" in alert["advice"]
