"""The code location as Dagster loads it: assets, executor limits, the schedule and its lag, typed settings."""

import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from dagster import build_schedule_context
from pydantic import ValidationError

from flows_pipeline.definitions import defs
from flows_pipeline.errors import ConfigurationError, UnknownPartitionError
from flows_pipeline.hour import hour_of, recent_closed_hours
from flows_pipeline.orchestration.concurrency import DEFAULT_MAX_CONCURRENT
from flows_pipeline.orchestration.freshness import publication_deadline
from flows_pipeline.orchestration.jobs import build_hourly_schedule
from flows_pipeline.orchestration.resources import freshness_margin_minutes, resources_from_env, source_lag_minutes
from flows_pipeline.orchestration.schedule_lag import SCHEDULE_LAG_TAG, check_schedule_lag
from flows_pipeline.sources.source_reader import FILE_FORMATS, SOURCE_KINDS


def test_definitions_load_with_the_hourly_assets():
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"raw_flows", "flow_table", "flow_quarantine", "flow_index", "flow_summary"}
    job = defs.resolve_job_def("flows_hourly_job")
    assert job.partitions_def.get_first_partition_key() == "2021-10-28-00:00"
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == keys


def test_every_check_result_belongs_to_its_hour_and_backfills_run_one_hour_per_run():
    graph = defs.resolve_asset_graph()
    checks = {key.name: graph.get_check_spec(key) for key in graph.asset_check_keys}
    assert set(checks) == {
        "every_record_accounted_for", "documents_match_table", "no_duplicate_documents", "summary_agrees_with_index",
        "exporters_reporting", "hour_volume",
    }  # fmt: skip
    # exporter health warns and never stops a run: it is not blocking
    assert not checks["exporters_reporting"].blocking and not checks["hour_volume"].blocking
    assert all(spec.partitions_def == graph.get(spec.asset_key).partitions_def for spec in checks.values())
    assert all(spec.description for spec in checks.values())
    # no backfill policy: Dagster's per-partition runs, each tagged dagster/partition (the runs list shows it)
    assert {graph.get(key).backfill_policy for key in graph.get_all_asset_keys()} == {None}


def test_the_first_hour_is_configurable_and_checked():
    assert (
        loaded_with(
            "defs.resolve_job_def('flows_hourly_job').partitions_def.get_first_partition_key()",
            FLOWS_FIRST_HOUR="2025-06-01-00:00",
        )
        == "2025-06-01-00:00"
    )
    # an earlier first hour than the default's: its hours are hours of the steps too
    assert (
        loaded_with(
            "__import__('flows_pipeline.orchestration.partitions').orchestration.partitions.partition_hour("
            "'2021-06-01-05:00').key",
            FLOWS_FIRST_HOUR="2021-01-01-00:00",
        )
        == "2021-06-01-05:00"
    )
    with pytest.raises(subprocess.CalledProcessError) as refused:
        loaded_with("defs", FLOWS_FIRST_HOUR="2025-06-01T00:30")
    assert "FLOWS_FIRST_HOUR='2025-06-01T00:30' is not a whole UTC hour" in refused.value.stderr


@pytest.mark.parametrize(
    ("lag", "margin", "cron", "window_min"), [(15, 30, "45 * * * *", 45), (40, 35, "15 * * * *", 60)]
)
def test_an_hour_is_late_once_unpublished_by_the_lag_plus_a_margin(lag, margin, cron, window_min):
    policy = publication_deadline(lag, margin)
    assert (policy.deadline_cron, policy.lower_bound_delta.total_seconds()) == (cron, window_min * 60)
    with pytest.raises(ConfigurationError, match="FLOWS_FRESHNESS_MARGIN_MINUTES=0"):
        publication_deadline(lag, 0)
    loaded = loaded_with(
        "defs.resolve_assets_def('flow_index').specs_by_key[__import__('dagster').AssetKey('flow_index')]"
        ".freshness_policy.deadline_cron",
        FLOWS_SOURCE_LAG_MINUTES=str(lag),
        FLOWS_FRESHNESS_MARGIN_MINUTES=str(margin),
    )
    assert loaded == cron


def test_executor_limits_are_explicit_and_never_the_cpu_count():
    executor = defs.resolve_job_def("flows_hourly_job").executor_def
    resolved = executor.config_schema.as_field().config_type  # the configured schema of our executor
    fields = resolved.fields
    assert fields["max_concurrent"].default_value == DEFAULT_MAX_CONCURRENT == 4
    assert fields["es_bulk_steps"].default_value == 2


@pytest.mark.parametrize(
    ("tick", "partition"),
    [
        (datetime(2021, 10, 28, 4, 15, tzinfo=UTC), "2021-10-28-03:00"),
        (datetime(2021, 10, 29, 0, 15, tzinfo=UTC), "2021-10-28-23:00"),  # across midnight
        (datetime(2021, 10, 28, 1, 15, tzinfo=UTC), "2021-10-28-00:00"),  # the first partition
    ],
)
def test_schedule_requests_the_hour_that_just_closed(tick, partition):
    requests = tick_requests(defs.resolve_schedule_def("flows_hourly_job_schedule"), tick)
    assert [r.partition_key for r in requests] == [partition]
    assert requests[0].tags[SCHEDULE_LAG_TAG] == "15"


def tick_requests(schedule, tick: datetime) -> list:
    context = build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def())
    return list(schedule.evaluate_tick(context).run_requests)


def test_schedule_runs_at_quarter_past_and_is_stopped_until_turned_on():
    schedule = defs.resolve_schedule_def("flows_hourly_job_schedule")
    assert schedule.cron_schedule == "15 * * * *"
    assert schedule.default_status.value == "STOPPED"


@pytest.mark.parametrize(
    ("lag", "cron", "tick", "partition"),
    [
        (40, "40 * * * *", datetime(2021, 10, 28, 4, 40, tzinfo=UTC), "2021-10-28-03:00"),
        (75, "15 * * * *", datetime(2021, 10, 28, 5, 15, tzinfo=UTC), "2021-10-28-03:00"),  # past the next hour
        (0, "0 * * * *", datetime(2021, 10, 28, 4, 0, tzinfo=UTC), "2021-10-28-03:00"),
    ],
)
def test_schedule_waits_for_the_source_lag(lag, cron, tick, partition):
    schedule = build_hourly_schedule(lag)
    assert schedule.cron_schedule == cron
    requests = tick_requests(schedule, tick)
    assert [r.partition_key for r in requests] == [partition]
    assert requests[0].tags[SCHEDULE_LAG_TAG] == str(lag)


def loaded_with(expression: str, **environ: str) -> str:
    """`expression` about `defs`, printed by a fresh interpreter that loads the definitions with `environ`."""
    code = f"from flows_pipeline.definitions import defs; print({expression})"
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **environ}, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_schedule_follows_flows_source_lag_minutes_when_the_definitions_load():
    cron = loaded_with(
        "defs.resolve_schedule_def('flows_hourly_job_schedule').cron_schedule", FLOWS_SOURCE_LAG_MINUTES="25"
    )
    assert cron == "25 * * * *"


def test_a_run_requested_with_another_lag_than_the_source_reads_fails_naming_both():
    check_schedule_lag({}, 15)  # not from the schedule: nothing to compare
    check_schedule_lag({SCHEDULE_LAG_TAG: "15"}, 15)
    with pytest.raises(ConfigurationError, match=r"15 minutes after it closed.*FLOWS_SOURCE_LAG_MINUTES\) is 40"):
        check_schedule_lag({SCHEDULE_LAG_TAG: "15"}, 40)


@pytest.mark.parametrize("key", ["2021-10-28", "2021-10-28-03:30", "2020-01-01-00:00", "tomorrow"])
def test_unknown_partition_keys_are_rejected_clearly(key):
    with pytest.raises(UnknownPartitionError, match="unknown partition key"):
        hour_of(key)


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("FLOWS_SOURCE", "nfdump", "'synthetic', 'nfcapd', 'goflow2' or 'csv'"),
        ("FLOWS_BAD_FILES", "ignore", "'fail' or 'skip'"),
        ("FLOWS_EMPTY_HOUR", "yes", "'fail' or 'empty'"),
    ],
)
def test_a_wrong_choice_fails_when_the_definitions_load_naming_the_allowed_values(variable, value, allowed):
    with pytest.raises(ValidationError, match=allowed):
        resources_from_env({variable: value})


def test_every_file_source_kind_has_a_reader():
    assert set(SOURCE_KINDS) == {"synthetic", *FILE_FORMATS}


def test_descriptions_name_the_configured_prefix():
    description = loaded_with(
        "next(iter(defs.resolve_assets_def('flow_index').descriptions_by_key.values()))", FLOWS_INDEX_PREFIX="netflows"
    )
    assert "`netflows-YYYY.MM.DD-HH`" in description and "`netflows`" in description and "`flows" not in description


def test_the_demo_and_the_ui_test_use_the_most_recent_closed_hours():
    now = datetime(2026, 11, 29, 0, 20, tzinfo=UTC)
    assert recent_closed_hours(now, 3) == ["2026-11-28-21:00", "2026-11-28-22:00", "2026-11-28-23:00"]


@pytest.mark.parametrize("variable", ["FLOWS_SOURCE_LAG_MINUTES", "FLOWS_FRESHNESS_MARGIN_MINUTES"])
def test_minutes_that_are_not_whole_minutes_fail_naming_the_variable(variable):
    with pytest.raises(ConfigurationError, match=f"{variable}='15m': expected whole minutes"):
        (source_lag_minutes if "LAG" in variable else freshness_margin_minutes)({variable: "15m"})
