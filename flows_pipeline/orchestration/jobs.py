"""The hourly job, its executor and its schedule.

Concurrency inside one run is set here, explicitly, where a reader looks for it: the incident's
pool defaulted to the CPU count (64 processes, each holding the whole hour). Across runs the
instance config (dagster_home/dagster.yaml) limits the `flows_es_bulk` pool and the run queue.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Enum,
    EnumValue,
    ExecutorDefinition,
    Field,
    RunRequest,
    ScheduleEvaluationContext,
    configured,
    define_asset_job,
    multiprocess_executor,
    schedule,
)

from flows_pipeline.errors import ConfigurationError
from flows_pipeline.orchestration.concurrency import DEFAULT_ES_BULK_STEPS, DEFAULT_MAX_CONCURRENT, ES_BULK_TAG
from flows_pipeline.orchestration.partitions import FIRST_HOUR
from flows_pipeline.orchestration.resources import source_lag_minutes
from flows_pipeline.orchestration.schedule_lag import SCHEDULE_LAG_TAG, cron_for_lag, hour_due_at
from flows_pipeline.orchestration.step_server import PRELOAD_MODULES


@configured(
    multiprocess_executor,
    config_schema={
        "max_concurrent": Field(
            int, default_value=DEFAULT_MAX_CONCURRENT, description="Steps of one run at once (never the CPU count)."
        ),
        "es_bulk_steps": Field(
            int, default_value=DEFAULT_ES_BULK_STEPS, description="index_chunk steps of one run at once."
        ),
        "start_method": Field(
            Enum("StepStartMethod", [EnumValue("forkserver"), EnumValue("spawn")]),
            default_value="forkserver",
            description="How step processes start; forkserver preloads the project (see bench/ for the cost).",
        ),
    },
)
def flows_executor(config: dict) -> dict:
    """Multiprocess, with explicit limits; steps fork from a server that preloaded the project.

    forkserver: a step starts by forking a process that already imported Dagster and the project
    (fast), and that server is started before any data exists, so no step inherits a parent's
    rows or bulk bodies, which is what `fork` did in the incident.
    """
    return {
        "max_concurrent": config["max_concurrent"],
        "tag_concurrency_limits": [{"key": ES_BULK_TAG, "value": "true", "limit": config["es_bulk_steps"]}],
        "start_method": (
            {"forkserver": {"preload_modules": PRELOAD_MODULES}}
            if config["start_method"] == "forkserver"
            else {"spawn": {}}
        ),
    }


EXECUTOR_ENV = "FLOWS_EXECUTOR"


def executor_from_env(environ: Mapping[str, str] = os.environ) -> ExecutorDefinition:
    """FLOWS_EXECUTOR: `multiprocess` (the default: steps on this machine) or `celery` (steps on the
    workers of FLOWS_CELERY_BROKER_URL, with the same limits: celery_steps.py)."""
    choice = environ.get(EXECUTOR_ENV, "multiprocess")
    if choice == "multiprocess":
        return flows_executor
    if choice == "celery":
        from flows_pipeline.orchestration.celery_steps import flows_celery_executor

        return flows_celery_executor
    raise ConfigurationError(
        f"{EXECUTOR_ENV}={choice!r} is not an executor of flows_pipeline; use multiprocess or celery"
    )


flows_hourly_job = define_asset_job(
    "flows_hourly_job",
    selection=AssetSelection.groups("flows"),
    executor_def=executor_from_env(),
    description="Raw flows -> flow table -> Elasticsearch index, for one hour.",
)


def build_hourly_schedule(lag_minutes: int):
    """The schedule of `flows_hourly_job`: each tick, FLOWS_SOURCE_LAG_MINUTES after an hour closed,
    requests that hour. Stopped by default: turn it on in the UI (Automation)."""

    @schedule(
        name="flows_hourly_job_schedule",
        job=flows_hourly_job,
        cron_schedule=cron_for_lag(lag_minutes),
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED,
        description=(
            f"Each tick requests one hour partition of flows_hourly_job: the hour that closed {lag_minutes} minutes "
            "ago (FLOWS_SOURCE_LAG_MINUTES: late files arrive). Its runs are tagged dagster/partition."
        ),
        # Dagster 1.13 shows "Partition set: None" for every schedule (it no longer records one): say it here
        metadata={"partitions": f"hourly, UTC, from {FIRST_HOUR}", "source_lag_minutes": lag_minutes},
    )
    def flows_hourly_schedule(context: ScheduleEvaluationContext) -> RunRequest:
        key = hour_due_at(context.scheduled_execution_time, lag_minutes)
        return RunRequest(run_key=key, partition_key=key, tags={SCHEDULE_LAG_TAG: str(lag_minutes)})

    return flows_hourly_schedule


flows_hourly_schedule = build_hourly_schedule(source_lag_minutes())
