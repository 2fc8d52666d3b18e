"""When an hour is late: not published within the source lag plus a margin after it closed.

Dagster's time-partition freshness check expects the most recent closed partition to be
materialized once a deadline tick has passed: here at minute (lag + margin) of every hour
(FLOWS_SOURCE_LAG_MINUTES + FLOWS_FRESHNESS_MARGIN_MINUTES). A sensor (stopped by default, like the
schedules) evaluates the checks; the UI shows them on flow_index.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dagster import AssetCheckSeverity, build_sensor_for_freshness_checks, build_time_partition_freshness_checks

from flows_pipeline.orchestration.assets.flow_index import flow_index
from flows_pipeline.orchestration.resources import source_lag_minutes

DEFAULT_MARGIN_MINUTES = 30  # a load of the incident's hour takes ~2 min; 30 leave room for retries and queues


def deadline_cron(environ: Mapping[str, str] = os.environ) -> str:
    margin = int(environ.get("FLOWS_FRESHNESS_MARGIN_MINUTES") or DEFAULT_MARGIN_MINUTES)
    return f"{(source_lag_minutes(environ) + margin) % 60} * * * *"


flow_index_freshness_checks = build_time_partition_freshness_checks(
    assets=[flow_index], deadline_cron=deadline_cron(), timezone="UTC", severity=AssetCheckSeverity.WARN
)
freshness_sensor = build_sensor_for_freshness_checks(
    freshness_checks=flow_index_freshness_checks, name="flows_freshness_sensor"
)
