"""Exporter health: four exporters report at 05:00, one goes silent at 06:00. The hour is loaded and
published as it arrived, and flow_summary's two warnings say what is missing. Real runs of the
assets against the real node; the history is what the summary index holds."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    DagsterRun,
    MetadataValue,
    build_run_status_sensor_context,
)
from dagster._core.storage.tags import PARTITION_NAME_TAG

from flows_pipeline.alerts import alert_settings
from flows_pipeline.errors import ConfigurationError
from flows_pipeline.es.summary_index import ensure_summary_index, index_summary, summary_history
from flows_pipeline.exporter_health import (
    MAX_NAMED_SILENT,
    ExporterHealthSettings,
    SummaryHistory,
    judge_volume,
    lookback_with_history,
    same_hours_before,
    silent_exporters,
    silent_exporters_text,
)
from flows_pipeline.hour import Hour, hour_of
from flows_pipeline.orchestration.alert_sensors import build_check_warnings_alert_sensor, check_warnings_alert
from flows_pipeline.orchestration.resources import resources_from_env
from flows_pipeline.tables.summary import SUMMARY_SCHEMA
from flows_pipeline_tests.alert_receivers import WebhookReceiver
from flows_pipeline_tests.fault_proxy import FaultProxy
from flows_pipeline_tests.orchestration.test_catch_up import exporter_file
from flows_pipeline_tests.support import ES_URL, step_failures

EXPORTERS = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::fe"]
# a day of its own: the session's summary index holds every test's hours
FIVE, SIX = hour_of("2021-11-10-05:00"), hour_of("2021-11-10-06:00")
SETTINGS = ExporterHealthSettings(lookback_hours=3, min_volume_fraction=0.5)


def summary_rows(hour: Hour, flows_by_exporter: dict[str, int]) -> pa.Table:
    """A summary as flow_summary writes one: a row per exporter, and the hour's flows as one transport."""
    rows = [
        {"hour": hour.key, "kind": "exporter", "key": ip, "rank": rank, "flows": n, "bytes": n, "packets": n}
        for rank, (ip, n) in enumerate(sorted(flows_by_exporter.items()), start=1)
    ]
    total = sum(flows_by_exporter.values())
    rows.append(
        {
            "hour": hour.key,
            "kind": "transport",
            "key": "udp",
            "rank": 1,
            "flows": total,
            "bytes": total,
            "packets": total,
        }
    )
    return pa.Table.from_pylist(rows, schema=SUMMARY_SCHEMA)


def checks(result) -> dict[str, object]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def tell_check_warnings(project, run_id: str, webhook: WebhookReceiver) -> None:
    """One evaluation of flows_check_warnings for the run, as the daemon makes it once the run succeeded."""
    sensor = build_check_warnings_alert_sensor(alert_settings({"FLOWS_ALERT_WEBHOOK": webhook.url}))
    with project.instance() as instance:
        [success] = instance.all_logs(run_id, of_type=DagsterEventType.RUN_SUCCESS)
        sensor(
            build_run_status_sensor_context(
                sensor_name="flows_check_warnings",
                dagster_event=success.dagster_event,
                dagster_instance=instance,
                dagster_run=instance.get_run_by_id(run_id),
            )
        )


def test_a_silent_exporter_and_a_small_hour_warn_and_the_hour_is_still_published(project, es_client, tmp_path):
    root = tmp_path / "collector"
    env = {"FLOWS_SOURCE": "goflow2", "FLOWS_SOURCE_ROOT": str(root)}
    for n, exporter in enumerate(EXPORTERS):
        exporter_file(root, exporter, 10 * n, 100 + n, start=FIVE.start)
    five = project.materialize_in_process(FIVE.key, extra_env=env)
    assert five.success, step_failures(five)
    first = checks(five)
    assert first["exporters_reporting"].passed, "no earlier hour: nobody to miss"
    assert (
        first["exporters_reporting"]
        .metadata["silent"]
        .text.startswith("not judged: none of the previous 3 hours has a summary with exporters")
    )
    assert (
        first["hour_volume"].passed
        and "not judged: 0 of the previous 7 days" in first["hour_volume"].metadata["volume"].text
    )
    [summary] = five.asset_materializations_for_node("flow_summary")
    assert summary.metadata["exporters"].value == 4
    assert "| 2001:db8::fe | 103 |" in summary.metadata["flows_by_exporter"].value

    # the same hour on three earlier days carried 10,000 flows each
    index = f"summary-{project.env['FLOWS_INDEX_PREFIX']}"
    for day in same_hours_before(SIX)[:3]:
        index_summary(es_client, index, day, summary_rows(day, {ip: 2_500 for ip in EXPORTERS}))
    for n, exporter in enumerate(EXPORTERS[:3]):  # 2001:db8::fe sends nothing at 06:00
        exporter_file(root, exporter, 10 * n, 100, start=SIX.start)
    six = project.materialize_in_process(SIX.key, extra_env=env)
    assert six.success, step_failures(six)  # warnings: the hour is what arrived, and is published
    alias = f"{project.env['FLOWS_INDEX_PREFIX']}-{SIX.label}"
    assert es_client.count(index=alias)["count"] == 300

    reporting, volume = checks(six)["exporters_reporting"], checks(six)["hour_volume"]
    assert not reporting.passed and reporting.severity == AssetCheckSeverity.WARN
    assert reporting.metadata["silent_exporters"].value == 1
    silent = reporting.metadata["silent"].text
    assert silent.startswith(f"2001:db8::fe (last seen {FIVE.key}: 103 flows): no flow from them in {SIX.key}"), silent
    assert not volume.passed and volume.severity == AssetCheckSeverity.WARN
    assert volume.metadata["usual_flows"].value == 10_000
    assert "300 flows, 3% of the same hour's median over the previous 3 days (10,000)" in volume.metadata["volume"].text
    assert checks(six)["summary_agrees_with_index"].passed

    # told by the alert sensor for succeeded runs; the 05:00 run, all checks passed, not at all
    with WebhookReceiver() as webhook:
        tell_check_warnings(project, five.run_id, webhook)
        assert webhook.bodies == []
        tell_check_warnings(project, six.run_id, webhook)
    [body] = webhook.bodies
    assert body["metadata"]["event_type"] == "flows_checks_warned"
    title = f"flows_pipeline: hour {SIX.key} loaded with warnings: exporters_reporting, hour_volume"
    assert body["text"].startswith(title)
    assert f"exporters_reporting on flow_summary: 2001:db8::fe (last seen {FIVE.key}: 103 flows)" in body["text"]
    assert "hour_volume on flow_summary: 300 flows, 3% of the same hour's median" in body["text"]

    # the silent exporter's hour is in the summary index as an absence, which the next hour reads
    history = summary_history(es_client, index, [SIX, FIVE])
    assert history.exporters[SIX.key] == {ip: 100 for ip in EXPORTERS[:3]}
    assert history.exporters[FIVE.key]["2001:db8::fe"] == 103
    assert history.flows == {SIX.key: 300, FIVE.key: 406}

    # a history that cannot be read leaves the hour published and unjudged, saying why
    with FaultProxy(ES_URL, "/_search", [400], body_contains=b'"kind":["exporter","transport"]') as proxy:
        again = project.materialize_in_process(SIX.key, extra_env=env | {"ES_URL": proxy.url})
    assert again.success and proxy.injected == [400], step_failures(again)
    assert checks(again)["summary_agrees_with_index"].passed
    for name in ("exporters_reporting", "hour_volume"):
        unjudged = checks(again)[name]
        assert not unjudged.passed and unjudged.severity == AssetCheckSeverity.WARN
        reason = unjudged.metadata["not_judged"].text
        assert reason.startswith(f"not judged: reading the earlier hours' summaries in {index}"), reason
        assert "illegal_argument_exception" in reason and "re-materialize flow_summary" in reason


def test_history_of_a_missing_summary_index_is_empty(es_client, index_prefix):
    assert summary_history(es_client, f"summary-{index_prefix}-none", [SIX]) == SummaryHistory({}, {})


def test_summary_history_reads_past_one_page_of_exporters(es_client, index_prefix):
    index = f"summary-{index_prefix}-many"
    ensure_summary_index(es_client, index, replicas=0)
    many = {f"10.9.{i // 250}.{i % 250}": 1 for i in range(12_000)}  # beyond a search's 10,000 hits
    index_summary(es_client, index, FIVE, summary_rows(FIVE, many))
    history = summary_history(es_client, index, [FIVE])
    assert len(history.exporters[FIVE.key]) == 12_000 and history.flows[FIVE.key] == 12_000
    es_client.indices.delete(index=index)


def test_an_exporter_is_silent_only_if_seen_within_the_lookback():
    history = SummaryHistory(
        exporters={
            hour_of("2021-11-10-05:00").key: {"192.0.2.1": 10, "192.0.2.2": 0},
            hour_of("2021-11-10-03:00").key: {"192.0.2.3": 7, "192.0.2.1": 99},
            hour_of("2021-11-10-02:00").key: {"192.0.2.4": 5},  # beyond 3 hours: long gone, not newly silent
        },
        flows={},
    )
    silent = silent_exporters(SIX, {"192.0.2.5": 1}, history, SETTINGS)
    assert [(s.observer_ip, s.last_seen, s.flows_then) for s in silent] == [
        ("192.0.2.1", "2021-11-10-05:00", 10),  # its latest sighting
        ("192.0.2.3", "2021-11-10-03:00", 7),
    ]
    assert silent_exporters(SIX, {"192.0.2.1": 1, "192.0.2.3": 1}, history, SETTINGS) == []


def test_the_unknown_exporter_is_never_silent_and_many_silent_ones_are_counted_past_the_named():
    many = {f"192.0.2.{n}": 5 for n in range(1, 31)} | {"0.0.0.0": 9, "::": 9}
    history = SummaryHistory(exporters={FIVE.key: many}, flows={})
    silent = silent_exporters(SIX, {}, history, SETTINGS)
    assert len(silent) == 30 and not {"0.0.0.0", "::"} & {s.observer_ip for s in silent}
    assert lookback_with_history(SIX, history, SETTINGS) == 1
    text = silent_exporters_text(SIX, silent, 1, 3)
    assert text.count("last seen") == MAX_NAMED_SILENT and " and 10 more: no flow from them in " in text
    assert silent_exporters_text(SIX, [], 1, 3).startswith("none: every exporter of the previous 3 hours (1 with")


def test_a_retried_check_alerts_on_its_latest_evaluation_only():
    def evaluation(name: str, passed: bool, text: str) -> AssetCheckEvaluation:
        return AssetCheckEvaluation(
            asset_key=AssetKey("flow_summary"),
            check_name=name,
            passed=passed,
            metadata={"said": MetadataValue.text(text)},
            severity=AssetCheckSeverity.WARN,
        )

    run = DagsterRun(job_name="flows_hourly", run_id="r1", tags={PARTITION_NAME_TAG: SIX.key})
    settings = alert_settings({})
    first, retried = evaluation("hour_volume", False, "not judged: busy"), evaluation("hour_volume", True, "fine")
    assert check_warnings_alert(run, [first, retried], settings) is None
    silent = [evaluation("exporters_reporting", False, "192.0.2.9 (once)")] * 2
    alert = check_warnings_alert(run, [*silent, first], settings)
    assert alert.error.count("192.0.2.9 (once)") == 1 and "hour_volume on flow_summary: not judged" in alert.error


def test_exporter_health_settings_that_are_not_numbers_fail_naming_the_variable():
    for variable in ("FLOWS_EXPORTER_LOOKBACK_HOURS", "FLOWS_MIN_HOUR_VOLUME_FRACTION"):
        with pytest.raises(ConfigurationError, match=f"{variable}='half': expected a"):
            resources_from_env({variable: "half"})


def test_volume_is_judged_against_the_median_of_the_same_hour_with_three_days_or_more():
    days = same_hours_before(SIX)
    assert [d.start for d in days] == [SIX.start - timedelta(days=n) for n in range(1, 8)]
    two = SummaryHistory(exporters={}, flows={days[0].key: 1000, days[1].key: 1000})
    assert judge_volume(SIX, 1, two, SETTINGS).usual is None and not judge_volume(SIX, 1, two, SETTINGS).too_low
    three = SummaryHistory(exporters={}, flows={days[0].key: 1000, days[3].key: 10, days[6].key: 1200})
    assert judge_volume(SIX, 499, three, SETTINGS).too_low  # median 1000: an outlier day does not pull it down
    assert not judge_volume(SIX, 500, three, SETTINGS).too_low
    off = ExporterHealthSettings(lookback_hours=3, min_volume_fraction=0)
    assert not judge_volume(SIX, 0, three, off).too_low and "check is off" in str(judge_volume(SIX, 0, three, off))
