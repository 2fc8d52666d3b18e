"""The hourly job, its executor and its schedule.

Concurrency inside one run is set here, explicitly, where a reader looks for it: the incident's
pool defaulted to the CPU count (64 processes, each holding the whole hour). Across runs the
instance config (dagster_home/dagster.yaml) limits the `flows_es_bulk` pool and the run queue.
"""

from __future__ import annotations

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Enum,
    EnumValue,
    Field,
    build_schedule_from_partitioned_job,
    configured,
    define_asset_job,
    multiprocess_executor,
)

from flows_pipeline.assets.flow_index import DEFAULT_ES_BULK_STEPS, ES_BULK_TAG

DEFAULT_MAX_CONCURRENT = 4
SCHEDULE_LAG_MINUTES = 15  # late flows of the closed hour arrive in the minutes after it


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
            {"forkserver": {"preload_modules": ["flows_pipeline.step_preload"]}}
            if config["start_method"] == "forkserver"
            else {"spawn": {}}
        ),
    }


flows_hourly_job = define_asset_job(
    "flows_hourly_job",
    selection=AssetSelection.groups("flows"),
    executor_def=flows_executor,
    description="Raw flows -> flow table -> Elasticsearch index, for one hour.",
)

# Each tick at HH:15 requests the hour that closed at HH:00. Stopped by default: turn it on in
# the UI (Automation) or set FLOWS_SCHEDULE_RUNNING=1 for a deployment that should start it.
flows_hourly_schedule = build_schedule_from_partitioned_job(
    flows_hourly_job,
    minute_of_hour=SCHEDULE_LAG_MINUTES,
    default_status=DefaultScheduleStatus.STOPPED,
)
