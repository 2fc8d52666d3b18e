"""The hourly partitioning shared by every asset, and its backfill policy."""

from __future__ import annotations

from dagster import BackfillPolicy, HourlyPartitionsDefinition

from flows_pipeline.hour import FIRST_HOUR_KEY

# end_offset=0: the current, still open hour is not a partition yet.
hourly_partitions = HourlyPartitionsDefinition(start_date=FIRST_HOUR_KEY, timezone="UTC")

# Backfills run one hour per run: the hour is the unit of retry and of atomic publication, and
# the cross-run limits (the flows_es_bulk pool, the run queue in dagster.yaml) bound how much of
# a long backfill runs at once. (`dagster asset materialize --partition-range` needs single_run
# instead; ranges go through `dagster job backfill`, see the README.)
ONE_RUN_PER_HOUR = BackfillPolicy.multi_run(max_partitions_per_run=1)
