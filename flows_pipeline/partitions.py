"""The hourly partitioning shared by every asset, and the hour a partition key names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dagster import BackfillPolicy, HourlyPartitionsDefinition

PARTITION_START = "2021-10-28-00:00"
KEY_FORMAT = "%Y-%m-%d-%H:%M"

# end_offset=0: the current, still open hour is not a partition yet.
hourly_partitions = HourlyPartitionsDefinition(start_date=PARTITION_START, timezone="UTC")

# Backfills run one hour per run: the hour is the unit of retry and of atomic publication, and
# the cross-run limits (the flows_es_bulk pool, the run queue in dagster.yaml) bound how much of
# a long backfill runs at once. (`dagster asset materialize --partition-range` needs single_run
# instead; ranges go through `dagster job backfill`, see the README.)
ONE_RUN_PER_HOUR = BackfillPolicy.multi_run(max_partitions_per_run=1)


class UnknownPartitionError(ValueError):
    pass


@dataclass(frozen=True)
class Hour:
    """One UTC hour, [start, end)."""

    start: datetime

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=1)

    @property
    def key(self) -> str:
        return self.start.strftime(KEY_FORMAT)

    @property
    def label(self) -> str:
        """Used in file and index names: 2021.10.28-03."""
        return self.start.strftime("%Y.%m.%d-%H")

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)


def hour_of(partition_key: str) -> Hour:
    """The hour a partition key names; a clear error for anything that is not one."""
    try:
        start = datetime.strptime(partition_key, KEY_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise UnknownPartitionError(
            f"unknown partition key {partition_key!r}: expected an hour like 2021-10-28-03:00 (UTC)"
        ) from None
    if start.minute != 0 or start < datetime.strptime(PARTITION_START, KEY_FORMAT).replace(tzinfo=UTC):
        raise UnknownPartitionError(
            f"unknown partition key {partition_key!r}: partitions are whole UTC hours from {PARTITION_START}"
        )
    return Hour(start)
