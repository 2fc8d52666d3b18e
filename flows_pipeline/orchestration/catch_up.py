"""The catch-up sensor: hours within a window that are missing, failed, or whose files changed are requested again.

The schedule requests each hour once, when it is due. An hour whose run failed after the daemon's
run retries (a cluster down for longer than a minute), whose files arrived after its tick (a late
exporter: they name the hour, so the loaded index lacks them), or that was never requested (the
daemon was down) would otherwise stay a hole forever. Each tick this sensor looks at every hour
due within the window (FLOWS_CATCH_UP_HOURS, default 48) and requests a run of flows_hourly_job
for the hour when:

- `missing`: no run published it, and the schedule had its grace to do so (FLOWS_CATCH_UP_GRACE_MINUTES);
- `failed`: its latest run failed transiently (or its process died) and the daemon will not
  retry it: again after a backoff that doubles with each catch-up attempt
  (FLOWS_CATCH_UP_BACKOFF_SECONDS, default 600), at most FLOWS_CATCH_UP_MAX_ATTEMPTS times;
- `files_changed`: the set of its source files (name, size, mtime; sources/file_sets.py) differs
  from the one its latest load read, or from the one a terminal failure read (a missing or corrupt
  file that is now there or replaced).

An hour with a run in progress, a failure the daemon retries, a terminal failure on unchanged
files (alerted: fix and re-run), or a canceled run (an operator's choice) is left alone. Run keys
hold the hour, the reason and what it is about (the failed run, the file set's digest), so each
event is requested once; the run's tags say why (CATCH_UP_REASON_TAG, CATCH_UP_DETAIL_TAG).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRecord,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.storage.dagster_run import FINISHED_STATUSES
from dagster._core.storage.tags import PARTITION_NAME_TAG, WILL_RETRY_TAG

from flows_pipeline.hour import Hour, parse_hour_key
from flows_pipeline.orchestration.failures import FAILURE_KIND_TAG
from flows_pipeline.orchestration.jobs import flows_hourly_job
from flows_pipeline.orchestration.partitions import FIRST_HOUR
from flows_pipeline.orchestration.resources import CatchUpSettings, FlowSource, catch_up_settings
from flows_pipeline.sources.file_sets import FileSet, file_sets_by_hour
from flows_pipeline.sources.source_reader import SourceSettings

CATCH_UP_REASON_TAG = "flows/catch_up_reason"  # missing, failed or files_changed
CATCH_UP_DETAIL_TAG = "flows/catch_up_detail"  # the words of the decision, for the run's page
SOURCE_FILES_DIGEST_TAG = "flows/source_files_digest"  # set by raw_flows: the file set it read
SOURCE_FILES_DIGEST = "source_files_digest"  # raw_flows metadata: the same digest
RAW_FLOWS, FLOW_INDEX = AssetKey("raw_flows"), AssetKey("flow_index")


@dataclass(frozen=True)
class HourHistory:
    """What the instance knows of one hour: its runs (newest first), whether flow_index was ever
    materialized, and the file-set digest of its latest raw_flows materialization."""

    hour: Hour
    runs: Sequence[RunRecord]
    published: bool
    loaded_digest: str | None


@dataclass(frozen=True)
class Decision:
    hour: str
    reason: str | None  # None: nothing to request
    detail: str
    run_key: str | None = None


def decide(history: HourHistory, files: FileSet | None, now: datetime, settings: CatchUpSettings, lag: timedelta):
    """Whether and why to request the hour again (the rules of the module's docstring).

    `files` is the hour's file set now (None: a source without files); `now` is aware (UTC).
    """
    key = history.hour.key
    due = history.hour.end + lag
    latest = history.runs[0].dagster_run if history.runs else None
    attempts = sum(1 for record in history.runs if record.dagster_run.tags.get(CATCH_UP_REASON_TAG))

    def request(reason: str, about: str, detail: str) -> Decision:
        return Decision(key, reason, detail, f"{key}/{reason}/{about}")

    if latest is not None and latest.status not in FINISHED_STATUSES:
        return Decision(key, None, f"run {latest.run_id} is {latest.status.value.lower()}")
    if latest is not None and latest.status == DagsterRunStatus.CANCELED:
        return Decision(key, None, f"run {latest.run_id} was canceled: re-run it by hand if it should load")
    changed = files is not None and _read_digest(history, latest) not in (None, files.digest)
    if latest is not None and latest.status == DagsterRunStatus.FAILURE:
        ended = history.runs[0].end_time or history.runs[0].create_timestamp.timestamp()
        return _after_failure(latest, ended, changed, files, attempts, now, settings, request)
    if not history.published:
        if now < due + settings.grace:
            return Decision(key, None, "not published yet; the schedule's run is due")
        about = latest.run_id if latest else "never-run"
        return request("missing", about, "never published" + (f" (latest run {latest.run_id})" if latest else ""))
    if changed:
        return request("files_changed", files.digest[:16], _files_detail(latest, files))
    return Decision(key, None, "published from its current files")


def _after_failure(latest, ended_s, changed, files, attempts, now, settings, request) -> Decision:
    key = latest.tags.get(PARTITION_NAME_TAG, "")
    if latest.tags.get(WILL_RETRY_TAG) == "true":
        return Decision(key, None, f"run {latest.run_id} failed and the daemon retries it")
    if changed:
        return request("files_changed", files.digest[:16], _files_detail(latest, files))
    if latest.tags.get(FAILURE_KIND_TAG) == "terminal":
        return Decision(key, None, f"run {latest.run_id} failed terminally on unchanged files: fix and re-run it")
    if attempts >= settings.max_attempts:
        return Decision(key, None, f"gave up after {attempts} catch-up runs; the last, {latest.run_id}, failed")
    again = datetime.fromtimestamp(ended_s, UTC) + settings.backoff * 2**attempts
    if now < again:
        return Decision(key, None, f"run {latest.run_id} failed; again after {again:%H:%M} UTC")
    return request("failed", latest.run_id, f"run {latest.run_id} failed transiently; catch-up attempt {attempts + 1}")


def _read_digest(history: HourHistory, latest: DagsterRun | None) -> str | None:
    """The file set the hour's latest run read (its tag), else its latest load's (raw_flows metadata)."""
    tagged = latest.tags.get(SOURCE_FILES_DIGEST_TAG) if latest else None
    return tagged or history.loaded_digest


def _files_detail(latest: DagsterRun | None, files: FileSet) -> str:
    since = f"run {latest.run_id}" if latest else "its load"
    return f"its source files changed since {since}: now {len(files.files)} files (digest {files.digest[:16]})"


def hours_due(now: datetime, settings: CatchUpSettings, lag: timedelta, first_hour: str = FIRST_HOUR) -> list[Hour]:
    """The hours of the window whose files are all due (closed more than `lag` ago), oldest first."""
    newest = (now - lag).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    oldest = max(newest - timedelta(hours=settings.window_hours - 1), parse_hour_key(first_hour))
    count = int((newest - oldest) / timedelta(hours=1)) + 1
    return [Hour(oldest + timedelta(hours=n)) for n in range(max(count, 0))]


def histories(instance: DagsterInstance, hours: Sequence[Hour]) -> list[HourHistory]:
    """The instance's record of each hour: three queries for the whole window."""
    if not hours:
        return []
    keys = [hour.key for hour in hours]
    runs_by_hour: dict[str, list[RunRecord]] = {key: [] for key in keys}
    for record in instance.get_run_records(RunsFilter(created_after=hours[0].start)):  # newest first
        partition = record.dagster_run.tags.get(PARTITION_NAME_TAG)
        if partition in runs_by_hour:
            runs_by_hour[partition].append(record)
    published = instance.get_materialized_partitions(FLOW_INDEX) & set(keys)
    digests: dict[str, str] = {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=RAW_FLOWS, asset_partitions=keys), limit=len(keys) * 20, ascending=False
    ).records
    for record in records:
        materialization = record.asset_materialization
        if materialization and materialization.partition not in digests:
            value = materialization.metadata.get(SOURCE_FILES_DIGEST)
            digests[materialization.partition] = getattr(value, "value", value)
    return [HourHistory(hour, runs_by_hour[hour.key], hour.key in published, digests.get(hour.key)) for hour in hours]


def catch_up_decisions(
    instance: DagsterInstance, source: SourceSettings, now: datetime, settings: CatchUpSettings
) -> list[Decision]:
    """Every hour of the window, oldest first, and whether to request it (see decide)."""
    hours = hours_due(now, settings, source.lag)
    file_sets = file_sets_by_hour(source, hours)
    return [
        decide(history, file_sets[history.hour.key] if file_sets is not None else None, now, settings, source.lag)
        for history in histories(instance, hours)
    ]


def run_requests(decisions: Iterable[Decision], most: int) -> list[RunRequest]:
    """The first `most` requested hours as runs of flows_hourly_job, tagged with why."""
    requested = [d for d in decisions if d.reason][:most]
    return [
        RunRequest(
            run_key=d.run_key,
            partition_key=d.hour,
            tags={CATCH_UP_REASON_TAG: d.reason, CATCH_UP_DETAIL_TAG: d.detail},
        )
        for d in requested
    ]


def build_catch_up_sensor(settings: CatchUpSettings):
    @sensor(
        name="flows_catch_up",
        job=flows_hourly_job,
        minimum_interval_seconds=settings.interval_seconds,
        default_status=DefaultSensorStatus.STOPPED,
        description=(
            f"Re-requests hours of the last {settings.window_hours} that are missing, failed transiently, or "
            "whose source files changed since they were loaded (orchestration/catch_up.py). Stopped by default, "
            "like the schedule: turn both on in the UI (Automation)."
        ),
    )
    def flows_catch_up(context: SensorEvaluationContext, source: FlowSource):
        decisions = catch_up_decisions(context.instance, source.settings(), datetime.now(UTC), settings)
        requests = run_requests(decisions, settings.max_requests_per_tick)
        for decision in decisions:
            if decision.reason:
                context.log.info(f"{decision.hour}: {decision.reason}: {decision.detail}")
        if not requests:
            waiting = [f"{d.hour}: {d.detail}" for d in decisions if not d.detail.startswith("published")]
            return SkipReason(f"every hour of the window is published from its current files{_listed(waiting)}")
        return SensorResult(run_requests=requests)

    return flows_catch_up


def _listed(lines: list[str]) -> str:
    return "; others: " + "; ".join(lines[:10]) if lines else ""


flows_catch_up_sensor = build_catch_up_sensor(catch_up_settings())
