from datetime import UTC, datetime

import pytest
from dagster import build_schedule_context

from flows_pipeline.definitions import defs
from flows_pipeline.jobs import DEFAULT_MAX_CONCURRENT
from flows_pipeline.partitions import UnknownPartitionError, hour_of


def test_definitions_load_with_the_hourly_assets():
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"raw_flows", "flow_table", "flow_index", "flow_summary"}
    job = defs.resolve_job_def("flows_hourly_job")
    assert job.partitions_def.get_first_partition_key() == "2021-10-28-00:00"


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
    context = build_schedule_context(scheduled_execution_time=tick)
    requests = list(defs.resolve_schedule_def("flows_hourly_job_schedule").evaluate_tick(context).run_requests)
    assert [r.partition_key for r in requests] == [partition]


def test_schedule_runs_at_quarter_past_and_is_stopped_until_turned_on():
    schedule = defs.resolve_schedule_def("flows_hourly_job_schedule")
    assert schedule.cron_schedule == "15 * * * *"
    assert schedule.default_status.value == "STOPPED"


@pytest.mark.parametrize("key", ["2021-10-28", "2021-10-28-03:30", "2020-01-01-00:00", "tomorrow"])
def test_unknown_partition_keys_are_rejected_clearly(key):
    with pytest.raises(UnknownPartitionError, match="unknown partition key"):
        hour_of(key)
