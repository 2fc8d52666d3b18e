"""Is every exporter still sending, and is the hour as large as that hour usually is?

A router that stops exporting, or a collector that loses one exporter's UDP stream, leaves an
hour that loads exactly what arrived: every count agrees, and only what is missing tells. Two
judgements of one hour against the hours before it, as the summary index holds them (the
`exporter` rows: flows per `observer.ip`; the `transport` rows: the hour's flows):

- silent exporters: seen in any of the previous `lookback_hours` hours, and sending nothing now;
- volume: the hour's flows against the median of the same hour of day on the previous
  `VOLUME_DAYS` days (daily traffic has a daily shape; comparing 03:00 with 14:00 would warn
  every night), too low below `min_fraction` of it. Judged only with MIN_VOLUME_DAYS days of history.

Both are warnings (flow_summary's asset checks): the hour itself is loaded and published as it is.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from flows_pipeline.hour import Hour

# nfdump's stand-in when a record carries no exporter address: not an exporter that can fall silent
UNKNOWN_EXPORTERS = frozenset({"0.0.0.0", "::"})
MAX_NAMED_SILENT = 20  # a check's text (and so an alert) names this many silent exporters, then counts the rest
VOLUME_DAYS = 7  # the same hour of day on this many previous days
MIN_VOLUME_DAYS = 3  # fewer days of history: too little to call an hour small


@dataclass(frozen=True)
class ExporterHealthSettings:
    lookback_hours: int  # an exporter seen in these previous hours is expected in this one
    min_volume_fraction: float  # an hour below this fraction of its usual flows warns; 0 never


@dataclass(frozen=True)
class SummaryHistory:
    """What earlier hours' summaries say: flows per exporter, and flows in all, by hour key."""

    exporters: Mapping[str, Mapping[str, int]]  # hour key -> observer.ip -> flows
    flows: Mapping[str, int]  # hour key -> the hour's flows


def lookback_hours(hour: Hour, settings: ExporterHealthSettings) -> list[Hour]:
    """The previous hours whose exporters this hour is expected to have, latest first."""
    return [Hour(hour.start - timedelta(hours=n)) for n in range(1, settings.lookback_hours + 1)]


def same_hours_before(hour: Hour) -> list[Hour]:
    """The same hour of day on each of the VOLUME_DAYS previous days, latest first."""
    return [Hour(hour.start - timedelta(days=n)) for n in range(1, VOLUME_DAYS + 1)]


def history_hours(hour: Hour, settings: ExporterHealthSettings) -> list[Hour]:
    """Every earlier hour either judgement reads."""
    return [*lookback_hours(hour, settings), *same_hours_before(hour)]


@dataclass(frozen=True)
class SilentExporter:
    observer_ip: str
    last_seen: str  # the latest previous hour it sent flows in
    flows_then: int

    def __str__(self) -> str:
        return f"{self.observer_ip} (last seen {self.last_seen}: {self.flows_then:,} flows)"


def silent_exporters(
    hour: Hour, current: Mapping[str, int], history: SummaryHistory, settings: ExporterHealthSettings
) -> list[SilentExporter]:
    """Exporters seen in the lookback hours that sent no flow in `hour`, by address.

    The unknown exporter (0.0.0.0 or ::, records without an exporter address) is never one.
    """
    silent: dict[str, SilentExporter] = {}
    for previous in lookback_hours(hour, settings):  # latest first: the first sighting is the last one
        for observer_ip, flows in history.exporters.get(previous.key, {}).items():
            known = observer_ip not in UNKNOWN_EXPORTERS
            if known and flows > 0 and not current.get(observer_ip) and observer_ip not in silent:
                silent[observer_ip] = SilentExporter(observer_ip, previous.key, flows)
    return [silent[ip] for ip in sorted(silent)]


def lookback_with_history(hour: Hour, history: SummaryHistory, settings: ExporterHealthSettings) -> int:
    """How many of the lookback hours have a summary with exporters: 0 means silence cannot be judged."""
    return sum(1 for previous in lookback_hours(hour, settings) if history.exporters.get(previous.key))


def silent_exporters_text(hour: Hour, silent: list[SilentExporter], judged_hours: int, lookback: int) -> str:
    """What the exporters_reporting check says: the silent ones (the first MAX_NAMED_SILENT), or why none."""
    if silent:
        named = ", ".join(map(str, silent[:MAX_NAMED_SILENT]))
        more = f" and {len(silent) - MAX_NAMED_SILENT:,} more" if len(silent) > MAX_NAMED_SILENT else ""
        return (
            f"{named}{more}: no flow from them in {hour.key}. Check the exporter's export config and the "
            "collector's listener for it; a file that arrives late is loaded by the catch-up sensor"
        )
    if judged_hours == 0:
        return (
            f"not judged: none of the previous {lookback} hours has a summary with exporters "
            "(not loaded yet, empty, or expired)"
        )
    return f"none: every exporter of the previous {lookback} hours ({judged_hours} with a summary) sent flows"


@dataclass(frozen=True)
class VolumeJudgement:
    flows: int
    usual: float | None  # median flows of the same hour on the previous days; None: too little history
    days: int  # how many of those days had a summary
    min_fraction: float

    @property
    def too_low(self) -> bool:
        return self.usual is not None and self.flows < self.min_fraction * self.usual

    def __str__(self) -> str:
        if self.min_fraction <= 0:
            return f"{self.flows:,} flows; the volume check is off (FLOWS_MIN_HOUR_VOLUME_FRACTION=0)"
        if self.usual is None:
            return (
                f"{self.flows:,} flows; not judged: {self.days} of the previous {VOLUME_DAYS} days have this hour "
                f"(needs {MIN_VOLUME_DAYS})"
            )
        share = self.flows / self.usual if self.usual else float("inf")
        return (
            f"{self.flows:,} flows, {share:.0%} of the same hour's median over the previous {self.days} days "
            f"({self.usual:,.0f}); {'below' if self.too_low else 'at or above'} the {self.min_fraction:.0%} floor"
        )


def judge_volume(hour: Hour, flows: int, history: SummaryHistory, settings: ExporterHealthSettings) -> VolumeJudgement:
    """The hour's flows against the median of the same hour on the previous days that have one."""
    before = [history.flows[h.key] for h in same_hours_before(hour) if h.key in history.flows]
    enough = settings.min_volume_fraction > 0 and len(before) >= MIN_VOLUME_DAYS
    return VolumeJudgement(
        flows=flows,
        usual=float(statistics.median(before)) if enough else None,
        days=len(before),
        min_fraction=settings.min_volume_fraction,
    )
