"""The hourly schedule waits for the hour's late files: it follows the source lag, and checks it.

Collectors name files by arrival, so the hour H is complete only once the files named up to
H+1:00 + FLOWS_SOURCE_LAG_MINUTES exist. The schedule therefore ticks that long after each hour,
and tags the runs it requests with the lag it used. A run whose tag disagrees with the lag its
own process reads (the daemon started with another value than the run's environment) would read
an hour whose last files may not exist yet: it fails, naming both values.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from flows_pipeline.errors import ConfigurationError
from flows_pipeline.hour import KEY_FORMAT

SCHEDULE_LAG_TAG = "flows/source_lag_minutes"


def cron_for_lag(lag_minutes: int) -> str:
    """A tick every hour, `lag_minutes` past the hour's end (modulo the hour: the hour requested shifts)."""
    return f"{lag_minutes % 60} * * * *"


def hour_due_at(tick: datetime, lag_minutes: int) -> str:
    """The partition key of the hour whose files are all in at `tick`: the latest H with H+1h+lag <= tick."""
    closed = tick - timedelta(minutes=lag_minutes) - timedelta(hours=1)
    return closed.replace(minute=0, second=0, microsecond=0).strftime(KEY_FORMAT)


def check_schedule_lag(run_tags: Mapping[str, str], source_lag_minutes: int) -> None:
    """Fail (ConfigurationError) when the schedule that requested this run waited less than the source's lag."""
    scheduled = run_tags.get(SCHEDULE_LAG_TAG)
    if scheduled is not None and int(scheduled) != source_lag_minutes:
        raise ConfigurationError(
            f"the schedule requested this hour {scheduled} minutes after it closed, but the source lag "
            f"(FLOWS_SOURCE_LAG_MINUTES) is {source_lag_minutes} minutes: its last files may not exist yet. Give "
            "the Dagster daemon and the runs the same FLOWS_SOURCE_LAG_MINUTES (then reload the code location)"
        )
