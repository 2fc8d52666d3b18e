"""The catch-up sensor re-requests hours whose files changed, that failed transiently, or that
are missing; never one in progress or failed terminally on unchanged files. Real runs of the
assets in process against the real node; decisions read from the real instance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dagster import AssetKey, build_sensor_context

from flows_pipeline.hour import hour_of
from flows_pipeline.orchestration.catch_up import (
    CATCH_UP_REASON_TAG,
    SOURCE_FILES_DIGEST,
    build_catch_up_sensor,
    catch_up_decisions,
    decide,
    histories,
    run_requests,
)
from flows_pipeline.orchestration.resources import CatchUpSettings, FlowSource
from flows_pipeline.sources.file_sets import hour_file_set
from flows_pipeline_tests.sources.test_file_sources import goflow2
from flows_pipeline_tests.support import step_failures

HOUR = "2021-10-28-06:00"
START = hour_of(HOUR).start
SECOND = 1_000_000_000
LAG = timedelta(minutes=15)
# one hour in the window: 06:00, looked at from 07:30
NOW = START + timedelta(hours=1, minutes=30)
SETTINGS = CatchUpSettings(window_hours=1, grace=timedelta(0), backoff=timedelta(minutes=10))


def exporter_file(root, exporter: str, minute: int, flows: int, start: datetime = START) -> None:
    """`flows` GoFlow2 records of one exporter, in a file named for minute `minute` of the hour at `start`."""
    t0 = int(start.timestamp()) * SECOND + minute * 60 * SECOND
    lines = [
        goflow2(
            i,
            sampler_address=exporter,
            time_flow_start_ns=t0 + i * 1000,
            time_flow_end_ns=t0 + i * 1000 + SECOND,
            time_received_ns=t0 + 2 * SECOND,
        )
        for i in range(flows)
    ]
    folder = root / exporter
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"goflow2-{start:%Y%m%d%H}{minute:02d}.jsonl").write_text("\n".join(lines) + "\n")


def decisions(project, source_env: dict[str, str], now=NOW):
    source = FlowSource(kind="goflow2", root=source_env["FLOWS_SOURCE_ROOT"], lag_minutes=15)
    with project.instance() as instance:
        return catch_up_decisions(instance, source.settings(), now, SETTINGS)


def test_a_late_file_gets_its_hour_loaded_again_and_the_run_says_why(project, es_client, tmp_path):
    root = tmp_path / "collector"
    env = {"FLOWS_SOURCE": "goflow2", "FLOWS_SOURCE_ROOT": str(root)}
    exporter_file(root, "192.0.2.1", 0, 1000)
    first = project.materialize_in_process(HOUR, extra_env=env)
    assert first.success, step_failures(first)
    alias = f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of(HOUR).label}"
    assert es_client.count(index=alias)["count"] == 1000
    [decision] = decisions(project, env)
    assert (decision.hour, decision.reason) == (HOUR, None), decision

    exporter_file(root, "192.0.2.2", 30, 500)  # a second exporter's 06:30 file arrives late

    [decision] = decisions(project, env)
    assert (decision.hour, decision.reason) == (HOUR, "files_changed")
    assert "now 2 files" in decision.detail
    [request] = run_requests([decision], most=4)
    assert request.partition_key == HOUR and request.run_key.startswith(f"{HOUR}/files_changed/")
    again = project.materialize_in_process(HOUR, extra_env=env, tags=request.tags)
    assert again.success, step_failures(again)
    es_client.indices.refresh(index=alias)
    assert es_client.count(index=alias)["count"] == 1500
    with project.instance() as instance:
        run = instance.get_run_by_id(again.run_id)
        assert run.tags[CATCH_UP_REASON_TAG] == "files_changed"
        loaded = instance.get_latest_materialization_event(AssetKey("raw_flows"))
        assert loaded.asset_materialization.metadata["files_read"].value == 2
        assert SOURCE_FILES_DIGEST in loaded.asset_materialization.metadata
    [decision] = decisions(project, env)
    assert decision.reason is None, "loaded from its current files: nothing more to request"


def test_a_transient_failure_is_requested_again_after_the_backoff_and_a_terminal_one_only_when_files_change(
    project, tmp_path
):
    root = tmp_path / "collector"
    env = {"FLOWS_SOURCE": "goflow2", "FLOWS_SOURCE_ROOT": str(root)}
    # no file yet: NoFlowFilesError, terminal
    failed = project.materialize_in_process(HOUR, select="raw_flows", extra_env=env)
    assert not failed.success
    [decision] = decisions(project, env)
    assert decision.reason is None and "terminally" in decision.detail

    exporter_file(root, "192.0.2.1", 5, 10)  # the files arrive: the hour is requested again
    [decision] = decisions(project, env)
    assert decision.reason == "files_changed"

    # a transient failure (the node unreachable) of a later run
    ok = project.materialize_in_process(HOUR, select="raw_flows,flow_table", extra_env=env)
    assert ok.success, step_failures(ok)
    down = project.materialize_in_process(
        HOUR, select="flow_index", extra_env={**env, "ES_URL": "http://127.0.0.1:9"}, tags={"flows/test": "down"}
    )
    assert not down.success
    with project.instance() as instance:
        ended = instance.get_run_record_by_id(down.run_id).end_time
    failed_at = datetime.fromtimestamp(ended, UTC)
    # the daemon's run retries would take it first (dagster/will_retry=true): here no daemon runs, so
    # the decision waits only for the backoff
    with project.instance() as instance:
        instance.add_run_tags(down.run_id, {"dagster/will_retry": "false"})
    with project.instance() as instance:
        [history] = histories(instance, [hour_of(HOUR)])
    files = hour_file_set(FlowSource(kind="goflow2", root=str(root)).settings(), hour_of(HOUR))
    soon = decide(history, files, failed_at + timedelta(minutes=5), SETTINGS, LAG)
    assert soon.reason is None and "again after" in soon.detail
    later = decide(history, files, failed_at + timedelta(minutes=11), SETTINGS, LAG)
    assert (later.reason, later.run_key) == ("failed", f"{HOUR}/failed/{down.run_id}")


def test_a_missing_hour_is_requested_once_the_schedule_had_its_grace(project, tmp_path):
    root = tmp_path / "collector"
    env = {"FLOWS_SOURCE": "goflow2", "FLOWS_SOURCE_ROOT": str(root)}
    [decision] = decisions(project, env)
    assert (decision.reason, decision.run_key) == ("missing", f"{HOUR}/missing/never-run")


def test_the_sensor_requests_through_its_settings_and_skips_with_a_reason(project, tmp_path, monkeypatch):
    sensor = build_catch_up_sensor(CatchUpSettings(window_hours=2, max_requests_per_tick=1))
    source = FlowSource(kind="synthetic")
    monkeypatch.setenv("FLOWS_FIRST_HOUR", HOUR)
    with project.instance() as instance:
        result = sensor(build_sensor_context(instance=instance, resources={"source": source}))
    # two hours of the window, never run (the recent ones: the sensor looks from now): one per tick
    assert len(result.run_requests) == 1
    assert result.run_requests[0].tags[CATCH_UP_REASON_TAG] == "missing"
