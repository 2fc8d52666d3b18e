"""The alert sensors: a run that failed for good, an hour late, each told once (flows_pipeline/alerts.py sends).

- `flows_run_failure_alert` (Dagster's `run_failure_sensor`, every job of the code location:
  the schedule's, catch-up, backfill, UI and `dagster asset materialize` runs): one message per
  failed run that the daemon will not retry (`dagster/will_retry` is not "true"; a retried run
  alerts only if its last retry fails), naming the hour, the failed assets, each step's own error
  and what to do, which depends on whether a terminal or a transient error ended it.
- `flows_credentials_expiry`: every 6 hours, the API key's and the certificates' expiry
  (es/credentials_expiry.py): one message per credential when it comes within
  FLOWS_EXPIRY_WARN_DAYS (14), again at 7, 3, 1 and 0 days, and once a day while the cluster
  refuses the credentials (expired, revoked), in the cluster's words.
- `flows_check_warnings` (Dagster's `run_status_sensor` on success): one message per run that
  succeeded with failed checks, the warnings that do not stop an hour (exporter health: a silent
  exporter, an hour far below its usual volume), naming the hour, each check and what it found.
- `flows_late_hours`: every minute, the hours of the catch-up window still unpublished at their
  deadline (source lag + FLOWS_FRESHNESS_MARGIN_MINUTES after they closed, the freshness
  policy's): one message per hour, naming its latest run and state; more than MAX_ALERTS_PER_TICK
  newly late hours at once (a first deployment, a daemon down for a day) make one message listing
  them. An hour alerted late that is published afterwards gets one "published late" message. The
  cursor holds the alerted hours of the window.

All start RUNNING when alerts are configured (FLOWS_ALERT_WEBHOOK, or FLOWS_ALERT_SMTP_HOST with
FLOWS_ALERT_EMAIL_TO), STOPPED otherwise. A delivery that fails after its retries fails the tick
(shown on the sensor's page, with the receiver's answer); a run status sensor moves on from that
run, the late-hour sensor tries again next tick.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetCheckEvaluation,
    DagsterEvent,
    DagsterEventType,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SkipReason,
    TextMetadataValue,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)
from dagster._core.storage.tags import PARTITION_NAME_TAG, WILL_RETRY_TAG

from flows_pipeline.alerts import Alert, AlertDeliveryError, AlertSettings, alert_settings, deliver
from flows_pipeline.es.cluster_errors import ClusterRefusedError
from flows_pipeline.es.credentials_expiry import Expiry, credential_expiries, expiring
from flows_pipeline.orchestration.catch_up import HourHistory, histories, hours_due
from flows_pipeline.orchestration.failures import FAILURE_KIND_TAG
from flows_pipeline.orchestration.resources import (
    CatchUpSettings,
    FlowsElasticsearch,
    FlowSource,
    catch_up_settings,
    freshness_margin_minutes,
)

MAX_ALERTS_PER_TICK = 3
REMATERIALIZE = "dagster asset materialize -m flows_pipeline.definitions --select '*' --partition {hour}"


def failed_assets(step_failures: Sequence[DagsterEvent]) -> list[str]:
    """The assets whose steps failed: a step key is its asset's (raw_flows) or under its graph's
    (flow_index.index_chunk[3])."""
    return sorted({event.step_key.split(".")[0].split("[")[0] for event in step_failures if event.step_key})


def step_error(event: DagsterEvent) -> str:
    """A failed step's own error text, without Dagster's wrapping: "ClusterRefusedError: … HTTP 403 …"."""
    data = event.step_failure_data
    error = data.error if data else None
    if error is None:
        return event.message or "no error recorded"
    while error.cause is not None and error.cls_name == "DagsterExecutionStepExecutionError":
        error = error.cause  # Dagster's "Error occurred while executing op": the step's own error is its cause
    text = error.message.strip()
    prefix = "dagster._core.definitions.events.Failure: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def failure_alert(
    run: DagsterRun, step_failures: Sequence[DagsterEvent], run_message: str, settings: AlertSettings
) -> Alert | None:
    """The alert for a failed run, or None when the daemon retries it (the retry's end decides)."""
    if run.tags.get(WILL_RETRY_TAG) == "true":
        return None
    hour = run.tags.get(PARTITION_NAME_TAG)
    assets = failed_assets(step_failures)
    errors = [f"{event.step_key}: {step_error(event)}" for event in step_failures[:3]]
    if len(step_failures) > 3:
        errors.append(f"and {len(step_failures) - 3} more failed steps (the run's page lists them)")
    kind = run.tags.get(FAILURE_KIND_TAG)
    again = REMATERIALIZE.format(hour=hour) if hour else "re-execute the run from the UI"
    if kind == "terminal":
        advice = f"it fails the same way every time: fix what the error names, then re-run: {again}"
    elif hour:
        advice = (
            "a transient fault outlasted the step's and the daemon's retries: the flows_catch_up sensor requests "
            f"the hour again after its backoff when it is on; to load it now: {again}"
        )
    else:
        advice = "re-execute the run from its page in the UI once the cause is gone"
    where = f" in {', '.join(assets)}" if assets else ""
    return Alert(
        event="hour_failed" if hour else "run_failed",
        summary=f"{'hour ' + hour if hour else 'run ' + run.job_name} failed{where}",
        error="\n".join(errors) or run_message,
        advice=advice,
        hour=hour,
        asset=", ".join(assets) or None,
        run_id=run.run_id,
        link=settings.run_link(run.run_id),
    )


def build_run_failure_alert_sensor(settings: AlertSettings):
    @run_failure_sensor(
        name="flows_run_failure_alert",
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING if settings.configured else DefaultSensorStatus.STOPPED,
        description=f"Tells {_channels(settings)} of each run that failed for good (orchestration/alert_sensors.py).",
    )
    def flows_run_failure_alert(context: RunFailureSensorContext):
        run = context.instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run  # tags now
        alert = failure_alert(run, context.get_step_failure_events(), context.failure_event.message or "", settings)
        if alert is None:
            context.log.info(f"run {run.run_id} failed and the daemon retries it: no alert yet")
            return
        context.log.info(f"{alert.summary}: sent to {', '.join(deliver(alert, settings))}")

    return flows_run_failure_alert


def check_warnings_alert(
    run: DagsterRun, evaluations: Sequence[AssetCheckEvaluation], settings: AlertSettings
) -> Alert | None:
    """The alert for a run that succeeded with failed (warning) checks, or None when every check passed."""
    # a retried step evaluates its checks again: only each check's latest evaluation counts
    latest = {(e.asset_key, e.check_name): e for e in evaluations}
    failed = [e for e in latest.values() if not e.passed]
    if not failed:
        return None
    hour = run.tags.get(PARTITION_NAME_TAG)
    # each check words what it found in its text metadata (the counts beside it are for the UI's plots)
    found = [
        f"{e.check_name} on {e.asset_key.to_user_string()}: "
        + "; ".join(v.value for v in e.metadata.values() if isinstance(v, TextMetadataValue))
        for e in failed
    ]
    names = sorted({e.check_name for e in failed})
    return Alert(
        event="checks_warned",
        summary=f"{'hour ' + hour if hour else 'run ' + run.job_name} loaded with warnings: {', '.join(names)}",
        error="\n".join(found),
        advice="the hour is published as it arrived; each finding above says where to look",
        hour=hour,
        asset=", ".join(sorted({e.asset_key.to_user_string() for e in failed})),
        run_id=run.run_id,
        link=settings.run_link(run.run_id),
    )


def run_check_evaluations(context: RunStatusSensorContext) -> list[AssetCheckEvaluation]:
    records = context.instance.all_logs(context.dagster_run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    return [record.dagster_event.event_specific_data for record in records]


def build_check_warnings_alert_sensor(settings: AlertSettings):
    @run_status_sensor(
        name="flows_check_warnings",
        run_status=DagsterRunStatus.SUCCESS,
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING if settings.configured else DefaultSensorStatus.STOPPED,
        description=(
            f"Tells {_channels(settings)} of each run that succeeded with failed warning checks (exporter health: a "
            "silent exporter, a small hour)."
        ),
    )
    def flows_check_warnings(context: RunStatusSensorContext):
        alert = check_warnings_alert(context.dagster_run, run_check_evaluations(context), settings)
        if alert is not None:
            context.log.info(f"{alert.summary}: sent to {', '.join(deliver(alert, settings))}")

    return flows_check_warnings


def late_alert(history: HourHistory, deadline: datetime, settings: AlertSettings) -> Alert:
    """The alert for one hour unpublished at its deadline, naming its latest run's state."""
    hour = history.hour.key
    latest = history.runs[0].dagster_run if history.runs else None
    if latest is None:
        state = "no run was ever requested for it"
        advice = (
            f"check that the daemon runs and the schedule flows_hourly_schedule is on; to load it now: {REMATERIALIZE}"
        )
    else:
        state = f"its latest run {latest.run_id} is {latest.status.value.lower()}"
        kind = latest.tags.get(FAILURE_KIND_TAG)
        state += f" ({kind} error)" if kind else ""
        advice = (
            "open the run's page for its error (a failure alert was sent if it failed for good); "
            f"a run still queued waits on the run queue or the flows_es_bulk pool; to load it now: {REMATERIALIZE}"
        )
    return Alert(
        event="hour_late",
        summary=f"hour {hour} is late: flow_index unpublished at {deadline:%Y-%m-%d %H:%M} UTC",
        error=state,
        advice=advice.format(hour=hour),
        hour=hour,
        asset="flow_index",
        run_id=latest.run_id if latest else None,
        link=settings.run_link(latest.run_id) if latest else None,
    )


def many_late_alert(late: Sequence[HourHistory]) -> Alert:
    keys = [history.hour.key for history in late]
    return Alert(
        event="hours_late",
        summary=f"{len(keys)} hours are late: flow_index unpublished for {keys[0]} … {keys[-1]}",
        error="unpublished at their deadlines: " + ", ".join(keys),
        advice=(
            "the daemon, the schedule or the cluster has been away: check `dagster-daemon` and the schedule; the "
            "flows_catch_up sensor, when on, requests them again; or backfill them from the UI"
        ),
        asset="flow_index",
    )


def published_late_alert(hour: str) -> Alert:
    return Alert(
        event="hour_published_late",
        summary=f"hour {hour} is published after all",
        error="it was reported late; flow_index now holds it",
        advice="nothing to do",
        hour=hour,
        asset="flow_index",
    )


def late_hour_alerts(
    found: Sequence[HourHistory], alerted: set[str], now: datetime, deadline_after: timedelta, settings: AlertSettings
) -> list[tuple[Alert, set[str]]]:
    """The alerts to send now, each with the hours it tells of.

    `found` is the window's hours (catch_up.histories), `alerted` the hours already told late; an
    hour is late once unpublished at its end + `deadline_after`.
    """
    newly = [h for h in found if not h.published and h.hour.end + deadline_after <= now and h.hour.key not in alerted]
    if len(newly) > MAX_ALERTS_PER_TICK:
        alerts = [(many_late_alert(newly), {h.hour.key for h in newly})]
    else:
        alerts = [(late_alert(h, h.hour.end + deadline_after, settings), {h.hour.key}) for h in newly]
    published = [h.hour.key for h in found if h.published and h.hour.key in alerted]
    return alerts + [(published_late_alert(hour), {hour}) for hour in published]


def build_late_hours_sensor(settings: AlertSettings, catch_up: CatchUpSettings, margin_minutes: int):
    margin = timedelta(minutes=margin_minutes)

    @sensor(
        name="flows_late_hours",
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING if settings.configured else DefaultSensorStatus.STOPPED,
        description=(
            f"Tells {_channels(settings)} of each hour of the last {catch_up.window_hours} still unpublished at "
            f"source lag + {margin_minutes} min after it closed, and when it is published after all."
        ),
    )
    def flows_late_hours(context: SensorEvaluationContext, source: FlowSource):
        lag = source.settings().lag
        found = histories(context.instance, hours_due(datetime.now(UTC), catch_up, lag))
        alerted = set(json.loads(context.cursor)) & {h.hour.key for h in found} if context.cursor else set()
        sent, failed = 0, []
        for alert, hours in late_hour_alerts(found, alerted, datetime.now(UTC), lag + margin, settings):
            try:
                context.log.info(f"{alert.summary}: sent to {', '.join(deliver(alert, settings))}")
            except AlertDeliveryError as err:
                # not raised: the tick's cursor would be lost with it and the alerts sent so far sent again
                context.log.error(str(err))
                failed.append(alert.summary)
                continue
            sent += 1
            alerted = alerted - hours if alert.event == "hour_published_late" else alerted | hours
        context.update_cursor(json.dumps(sorted(alerted)))
        unsent = f"; NOT delivered (again next tick): {'; '.join(failed)}" if failed else ""
        return SkipReason(f"{sent} alerts sent; hours told late: {', '.join(sorted(alerted)) or 'none'}{unsent}")

    return flows_late_hours


EXPIRY_THRESHOLDS_DAYS = (0, 1, 3, 7)  # besides FLOWS_EXPIRY_WARN_DAYS: each credential is told again at these


def expiry_alerts(expiries: Sequence[Expiry], told: set[str], now: datetime, warn_days: int) -> list[tuple[Alert, str]]:
    """One alert per credential and threshold crossed (warn_days, 7, 3, 1, 0 days left), with its cursor key."""
    alerts = []
    for expiry in expiring(list(expiries), now, warn_days):
        left = expiry.days_left(now)
        threshold = min(t for t in (*EXPIRY_THRESHOLDS_DAYS, warn_days) if t >= left) if left >= 0 else -1
        key = f"{expiry.credential}@{expiry.expires_at:%Y%m%d%H%M}/{threshold}"
        if key in told:
            continue
        alerts.append(
            (
                Alert(
                    event="credentials_expired" if left < 0 else "credentials_expiring",
                    summary=f"{expiry.credential} {'has EXPIRED' if left < 0 else f'expires in {left:.1f} days'}",
                    error=expiry.notice(now),
                    advice=expiry.renew + "; loads fail once it has expired",
                ),
                key,
            )
        )
    return alerts


def refused_alert(error: Exception) -> Alert:
    return Alert(
        event="credentials_refused",
        summary="the cluster refuses the pipeline's credentials",
        error=str(error),
        advice="every load fails until this is fixed: the error says what to renew or set",
    )


def build_credentials_expiry_sensor(settings: AlertSettings):
    @sensor(
        name="flows_credentials_expiry",
        minimum_interval_seconds=6 * 3600,
        default_status=DefaultSensorStatus.RUNNING if settings.configured else DefaultSensorStatus.STOPPED,
        description=(
            f"Tells {_channels(settings)} when the API key or the TLS certificate of the cluster expires within "
            "FLOWS_EXPIRY_WARN_DAYS (again at 7, 3, 1 and 0 days), or is refused; every 6 hours."
        ),
    )
    def flows_credentials_expiry(context: SensorEvaluationContext, es: FlowsElasticsearch):
        told = set(json.loads(context.cursor)) if context.cursor else set()
        now = datetime.now(UTC)
        try:
            pending = expiry_alerts(credential_expiries(es.connect(), es.connection()), told, now, es.expiry_warn_days)
        except ClusterRefusedError as refused:  # expired, revoked, wrong: told once a day
            pending = [(refused_alert(refused), f"refused/{now:%Y%m%d}/{str(refused)[:80]}")]
        for alert, key in pending:
            if key in told:
                continue
            context.log.info(f"{alert.summary}: sent to {', '.join(deliver(alert, settings))}")
            told.add(key)
        context.update_cursor(json.dumps(sorted(told)[-200:]))
        return SkipReason(f"{len(pending)} credential alerts; {len(told)} told so far")

    return flows_credentials_expiry


def _channels(settings: AlertSettings) -> str:
    return " and ".join(settings.channels) or "nobody (set FLOWS_ALERT_WEBHOOK or FLOWS_ALERT_SMTP_HOST)"


_settings = alert_settings()
flows_run_failure_alert_sensor = build_run_failure_alert_sensor(_settings)
flows_late_hours_sensor = build_late_hours_sensor(_settings, catch_up_settings(), freshness_margin_minutes())
flows_credentials_expiry_sensor = build_credentials_expiry_sensor(_settings)
flows_check_warnings_sensor = build_check_warnings_alert_sensor(_settings)
