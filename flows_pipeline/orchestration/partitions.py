"""The hourly partitioning shared by every asset, from the deployment's first hour.

Backfills run one hour per run, each run tagged `dagster/partition` with its hour (what the UI's
runs list shows): the assets set no backfill policy, which is Dagster's per-partition behaviour.
(`BackfillPolicy.multi_run(max_partitions_per_run=1)` also makes one run per hour, but tags it with
a partition *range* of one, which the runs list does not show as the hour.) The hour is the unit
of retry and of atomic publication; the cross-run limits (the flows_es_bulk pool, the run queue
in dagster.yaml) bound how much of a long backfill runs at once.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

from dagster import HourlyPartitionsDefinition, PreviewWarning

from flows_pipeline.errors import ConfigurationError
from flows_pipeline.hour import FIRST_HOUR_KEY, Hour, hour_of, parse_hour_key


def first_hour_from_env(environ: Mapping[str, str] = os.environ) -> str:
    """The first hour partition (FLOWS_FIRST_HOUR, e.g. 2025-01-01-00:00; default FIRST_HOUR_KEY).

    Raises ConfigurationError for a value that is not a whole UTC hour in that format.
    """
    key = environ.get("FLOWS_FIRST_HOUR") or FIRST_HOUR_KEY
    try:
        start = parse_hour_key(key)
    except ValueError:
        start = None
    if start is None or start.minute:
        raise ConfigurationError(
            f"FLOWS_FIRST_HOUR={key!r} is not a whole UTC hour: write it like {FIRST_HOUR_KEY} (YYYY-MM-DD-HH:00)"
        )
    return key


FIRST_HOUR = first_hour_from_env()

# Check results belong to their hour (AssetCheckSpec(partitions_def=hourly_partitions)), which
# Dagster 1.13 calls a preview: chosen knowingly (README, "Checks"), so it is not warned on every load.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=PreviewWarning)

# end_offset=0: the current, still open hour is not a partition yet.
hourly_partitions = HourlyPartitionsDefinition(start_date=FIRST_HOUR, timezone="UTC")


def partition_hour(partition_key: str) -> Hour:
    """The hour of a partition key, from the deployment's first hour on (UnknownPartitionError otherwise)."""
    return hour_of(partition_key, FIRST_HOUR)
