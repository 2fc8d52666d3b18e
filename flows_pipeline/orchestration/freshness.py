"""When an hour is late: not published within the source lag plus a margin after it closed.

A Dagster freshness policy on `flow_index` (evaluated by the daemon's freshness loop, shown on the
asset's page and in the catalog; not a check, so no run executes it): every hour, at minute
lag + margin (FLOWS_SOURCE_LAG_MINUTES + FLOWS_FRESHNESS_MARGIN_MINUTES), flow_index must have been
materialized since the last hour closed (when lag + margin is an hour or more: since the previous
deadline, the longest window Dagster allows for an hourly cron). Dagster evaluates the time of the
asset's latest materialization, whatever its partition: a backfill of an older hour in that
window also counts, and the UI words the window in whole hours ("no earlier than an hour before").
"""

from __future__ import annotations

from datetime import timedelta

from dagster import AssetsDefinition, FreshnessPolicy, apply_freshness_policy

from flows_pipeline.errors import ConfigurationError


def publication_deadline(lag_minutes: int, margin_minutes: int) -> FreshnessPolicy:
    """Fresh when materialized between the hour's close and minute lag + margin after it.

    Raises ConfigurationError for a margin under 1 minute (Dagster's resolution).
    """
    if margin_minutes < 1:
        raise ConfigurationError(f"FLOWS_FRESHNESS_MARGIN_MINUTES={margin_minutes}: it must be 1 or more")
    due = lag_minutes + margin_minutes
    # the window reaches back to the hour's close, never past the previous deadline
    return FreshnessPolicy.cron(
        deadline_cron=f"{due % 60} * * * *", lower_bound_delta=timedelta(minutes=min(due, 60)), timezone="UTC"
    )


def with_publication_deadline(asset: AssetsDefinition, lag_minutes: int, margin_minutes: int) -> AssetsDefinition:
    """`asset` with the publication deadline as its freshness policy."""
    policy = publication_deadline(lag_minutes, margin_minutes)
    return asset.map_asset_specs(lambda spec: apply_freshness_policy(spec, policy))
