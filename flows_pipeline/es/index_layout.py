"""Names and shape of the flow indices: buckets of days or weeks, aliases per hour, attempts.

A shard per hour (the first layout) stops a default node after ~41 days: a node refuses shards
beyond `cluster.max_shards_per_node` (1000). So the hours of a day (or a week) share one hidden
*bucket* index, and the public names are aliases:

- `<prefix>-YYYY.MM.DD-HH`, the hour alias: a filtered alias on the bucket that selects the
  documents of the hour's published load attempt;
- `<prefix>`, the read alias over all hours: on each bucket, filtered to the published attempts
  of that bucket's hours (Elasticsearch ORs the filters of several aliases on one index, so a
  search through any mix of them counts each document once);
- `<prefix>-YYYY.MM.DD-HH-<run>`, the attempt alias: hidden, the write target of one load (bulk
  requests go through it with `require_alias`, so a removed attempt is never auto-created), and
  the name an operator finds a load by.

Sizing (Elastic's guidance: shards of 10-50 GB and fewer than 200M documents): the incident's
hour had 7.85M flows, ~188M a day, ~35 GB at ~190 bytes a flow on disk: day buckets with 1
primary (2 above ~200M flows a day). A site of 100k flows an hour (~2.4M a day) fills a shard
in months: week buckets, 1 primary. Rule: primaries = ceil(max(flows per bucket / 200M,
bytes per bucket / 40 GB)).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from flows_pipeline.hour import Hour

BucketSpan = Literal["day", "week"]


@dataclass(frozen=True)
class IndexLayout:
    """Names and shape of the flow indices; defaults in resources.py."""

    prefix: str  # the read alias; every other name starts with <prefix>-
    bucket: BucketSpan  # how many hours share one index
    shards: int  # primary shards per bucket index
    replicas: int  # replicas of every bucket index (it holds published hours, so always on)

    @property
    def read_alias(self) -> str:
        return self.prefix

    @property
    def summary_index(self) -> str:
        """Outside `<prefix>-*` and `<prefix>*`, so flow searches and the flow mapping never meet it."""
        return f"summary-{self.prefix}"

    @property
    def lock_index(self) -> str:
        """Hidden; holds the lease that serialises publications (publish_lock.py)."""
        return f"{self.prefix}-publish-lock"

    @property
    def legacy_template(self) -> str:
        """The index template of the hourly layout, matching `<prefix>-*`; removed on upgrade."""
        return f"{self.prefix}-hourly"

    def hour_alias(self, hour: Hour) -> str:
        return f"{self.prefix}-{hour.label}"

    def attempt_alias(self, hour: Hour, run_id: str) -> str:
        return f"{self.hour_alias(hour)}-{run_id[:8]}"

    def attempts_pattern(self, hour: Hour) -> str:
        """Attempt aliases of the hour, and the hourly layout's attempt indices of the hour."""
        return f"{self.hour_alias(hour)}-*"

    def bucket_index(self, hour: Hour) -> str:
        """`<prefix>-day-2021.10.28` or `<prefix>-week-2021.10.25` (the Monday it starts on)."""
        if self.bucket == "day":
            return f"{self.prefix}-day-{hour.start:%Y.%m.%d}"
        monday = hour.start - timedelta(days=hour.start.weekday())
        return f"{self.prefix}-week-{monday:%Y.%m.%d}"

    def bucket_pattern(self) -> str:
        return f"{self.prefix}-day-*,{self.prefix}-week-*"

    def is_legacy_hour_index(self, index: str, hour: Hour) -> bool:
        """An index of the hourly layout holding this hour (`<prefix>-YYYY.MM.DD-HH-<run>`)."""
        return index.startswith(f"{self.hour_alias(hour)}-")
