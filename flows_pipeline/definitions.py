"""Assembles the code location: assets, job, schedule, executor and resources. Nothing else."""
# ruff: noqa: E402 (the imports follow step_server.start_early on purpose)

from __future__ import annotations

from flows_pipeline.orchestration import interpreter_exit, step_server

# before the imports below: the steps' forkserver preloads the project beside them (step_server.py)
step_server.start_early()
if step_server.this_process_orchestrates_steps():
    interpreter_exit.skip_final_collection()  # ~0.5-1 s of every CLI run's exit (interpreter_exit.py)

from dagster import Definitions

from flows_pipeline.orchestration.alert_sensors import (
    flows_check_warnings_sensor,
    flows_credentials_expiry_sensor,
    flows_late_hours_sensor,
    flows_run_failure_alert_sensor,
)
from flows_pipeline.orchestration.assets.flow_index import flow_index
from flows_pipeline.orchestration.assets.flow_summary import flow_summary
from flows_pipeline.orchestration.assets.flow_table import flow_table
from flows_pipeline.orchestration.assets.raw_flows import raw_flows
from flows_pipeline.orchestration.catch_up import flows_catch_up_sensor
from flows_pipeline.orchestration.freshness import with_publication_deadline
from flows_pipeline.orchestration.jobs import executor_from_env, flows_hourly_job, flows_hourly_schedule
from flows_pipeline.orchestration.resources import freshness_margin_minutes, resources_from_env, source_lag_minutes
from flows_pipeline.orchestration.retention_job import flows_retention_job, flows_retention_schedule
from flows_pipeline.orchestration.stale_runs import flows_dead_runs_sensor

defs = Definitions(
    assets=[
        raw_flows,
        flow_table,
        with_publication_deadline(flow_index, source_lag_minutes(), freshness_margin_minutes()),
        flow_summary,
    ],
    jobs=[flows_hourly_job, flows_retention_job],
    schedules=[flows_hourly_schedule, flows_retention_schedule],
    sensors=[
        flows_dead_runs_sensor,
        flows_catch_up_sensor,
        flows_run_failure_alert_sensor,
        flows_late_hours_sensor,
        flows_credentials_expiry_sensor,
        flows_check_warnings_sensor,
    ],
    # also the executor of `dagster asset materialize` and of materializations from the UI
    executor=executor_from_env(),
    resources=resources_from_env(),
)
