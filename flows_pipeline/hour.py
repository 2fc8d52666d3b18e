"""One UTC hour: the unit every table, index and run of the pipeline is cut by.

A partition key (`2021-10-28-03:00`) names an hour; the hour gives the time range its flows
must start in, and the labels its files and indices are named with. Times inside the pipeline
are integers in fixed units: nanoseconds in the raw records (GoFlow2's unit), milliseconds in
the flow table and in Elasticsearch (`date` fields keep milliseconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flows_pipeline.errors import UnknownPartitionError

NS_PER_MS = 1_000_000
MS_PER_HOUR = 3_600_000
NS_PER_HOUR = MS_PER_HOUR * NS_PER_MS

KEY_FORMAT = "%Y-%m-%d-%H:%M"
FIRST_HOUR_KEY = "2021-10-28-00:00"  # the first partition: the incident's day, which tests and cases use


@dataclass(frozen=True)
class Hour:
    """One UTC hour, [start, end)."""

    start: datetime

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=1)

    @property
    def key(self) -> str:
        """The partition key: 2021-10-28-03:00."""
        return self.start.strftime(KEY_FORMAT)

    @property
    def label(self) -> str:
        """Used in file and index names: 2021.10.28-03."""
        return self.start.strftime("%Y.%m.%d-%H")

    @property
    def start_ms(self) -> int:
        """Milliseconds since the epoch at the hour's start."""
        return int(self.start.timestamp()) * 1000

    @property
    def start_ns(self) -> int:
        """Nanoseconds since the epoch at the hour's start (the raw records' unit)."""
        return self.start_ms * NS_PER_MS

    @property
    def end_ns(self) -> int:
        """Nanoseconds since the epoch at the hour's end (exclusive)."""
        return self.start_ns + NS_PER_HOUR


def parse_hour_key(key: str) -> datetime:
    """The UTC start of a key like 2021-10-28-03:00; ValueError for anything else."""
    return datetime.strptime(key, KEY_FORMAT).replace(tzinfo=UTC)


def hour_of(partition_key: str, first_hour_key: str = FIRST_HOUR_KEY) -> Hour:
    """The hour a partition key names.

    Raises UnknownPartitionError (terminal) for a key that is not a whole UTC hour from
    `first_hour_key` on.
    """
    try:
        start = parse_hour_key(partition_key)
    except ValueError:
        raise UnknownPartitionError(
            f"unknown partition key {partition_key!r}: expected an hour like 2021-10-28-03:00 (UTC)"
        ) from None
    if start.minute != 0 or start < parse_hour_key(first_hour_key):
        raise UnknownPartitionError(
            f"unknown partition key {partition_key!r}: partitions are whole UTC hours from {first_hour_key}"
        )
    return Hour(start)


def recent_closed_hours(now: datetime, count: int) -> list[str]:
    """The partition keys of the `count` hours that closed last before `now`, oldest first."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [(current - timedelta(hours=n)).strftime(KEY_FORMAT) for n in range(count, 0, -1)]
