"""Alerts reach a real webhook receiver and a real SMTP server, once per event, with the hour, the
asset, the error's own text and what to do. Real runs of the assets in process against the real
node (a 403 injected by the fault proxy); the sensors are Dagster's, evaluated on the real instance."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from dagster import DagsterEventType, build_run_status_sensor_context, build_sensor_context

from flows_pipeline.alerts import Alert, AlertDeliveryError, alert_settings, deliver
from flows_pipeline.hour import Hour
from flows_pipeline.orchestration.alert_sensors import build_late_hours_sensor, build_run_failure_alert_sensor
from flows_pipeline.orchestration.resources import CatchUpSettings, FlowSource
from flows_pipeline_tests.alert_receivers import SmtpReceiver, WebhookReceiver
from flows_pipeline_tests.fault_proxy import FaultProxy
from flows_pipeline_tests.support import ES_URL, free_port, step_failures

PARTITION = "2021-10-28-21:00"  # an hour no other test publishes
FORBIDDEN = "security_exception: action [indices:data/write/bulk] is unauthorized for user [flows_loader]"


@pytest.fixture
def receivers():
    with WebhookReceiver() as webhook, SmtpReceiver() as smtp:
        yield webhook, smtp, alert_settings({"FLOWS_ALERT_WEBHOOK": webhook.url, **smtp.env()})


def run_failure_context(project, instance, run_id: str):
    [failure] = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
    return build_run_status_sensor_context(
        sensor_name="flows_run_failure_alert",
        dagster_event=failure.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
    ).for_run_failure()


def test_a_run_failed_for_good_is_told_once_by_webhook_and_email_with_the_clusters_reason(project, receivers):
    webhook, smtp, settings = receivers
    project.env |= {"FLOWS_SYNTHETIC_ROWS": "2000", "FLOWS_BULK_IN_FLIGHT": "1"}
    with FaultProxy(ES_URL, "/_bulk", [403]) as proxy:
        done = project.materialize_in_process(PARTITION, extra_env={"ES_URL": proxy.url}, es_bulk_steps=1)
    assert not done.success
    sensor = build_run_failure_alert_sensor(settings)

    with project.instance() as instance:
        sensor(run_failure_context(project, instance, done.run_id))

    [body] = webhook.bodies
    text = body["text"]
    assert f"hour {PARTITION} failed in flow_index" in text and FORBIDDEN in text
    assert "it fails the same way every time" in text and f"--partition {PARTITION}" in text
    payload = body["metadata"]["event_payload"]
    assert body["metadata"]["event_type"] == "flows_hour_failed"
    assert (payload["hour"], payload["asset"], payload["run_id"]) == (PARTITION, "flow_index", done.run_id)
    assert [block["type"] for block in body["blocks"]] == ["header", "section", "section", "section"]
    [mail] = smtp.messages
    assert mail["Subject"] == f"flows_pipeline: hour {PARTITION} failed in flow_index"
    assert mail["To"] == "noc@example.org" and mail["X-Flows-Event"] == "hour_failed"
    assert FORBIDDEN in mail.get_content() and "what to do:" in mail.get_content()


def test_a_run_the_daemon_retries_is_not_told_until_its_retry_fails(project, receivers):
    webhook, smtp, settings = receivers
    project.env |= {"FLOWS_SYNTHETIC_ROWS": "1000"}
    unreachable = {"ES_URL": f"http://127.0.0.1:{free_port()}"}
    done = project.materialize_in_process(PARTITION, extra_env=unreachable, es_bulk_steps=1)
    assert not done.success, step_failures(done)
    sensor = build_run_failure_alert_sensor(settings)

    with project.instance() as instance:
        assert instance.get_run_by_id(done.run_id).tags["dagster/will_retry"] == "true"
        sensor(run_failure_context(project, instance, done.run_id))
        assert webhook.bodies == [] and smtp.messages == []
        # the daemon's last retry failed too: now it is told, as transient, with the catch-up's part
        instance.add_run_tags(done.run_id, {"dagster/will_retry": "false"})
        sensor(run_failure_context(project, instance, done.run_id))

    [body] = webhook.bodies
    assert "flows_catch_up sensor requests the hour again" in body["text"]
    assert "unreachable" in body["text"].lower() or "ClusterUnavailableError" in body["text"]
    assert len(smtp.messages) == 1


def test_late_hours_are_told_once_each_then_once_published(project, receivers):
    webhook, smtp, settings = receivers
    project.env |= {"FLOWS_SYNTHETIC_ROWS": "500"}
    # the two hours before the last one that closed more than the lag (15 min) ago; deadline lag + 5 min
    window = CatchUpSettings(window_hours=2)
    sensor = build_late_hours_sensor(settings, window, margin_minutes=5)
    source = FlowSource(kind="synthetic", lag_minutes=15)
    now = datetime.now(UTC)
    newest = Hour((now - timedelta(minutes=15)).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1))
    older = Hour(newest.start - timedelta(hours=1))
    late = [older.key] + ([newest.key] if now >= newest.end + timedelta(minutes=20) else [])

    with project.instance() as instance:
        first = build_sensor_context(instance=instance, resources={"source": source})
        sensor(first)
        assert sorted(body["metadata"]["event_payload"]["hour"] for body in webhook.bodies) == late
        assert all("is late: flow_index unpublished" in body["text"] for body in webhook.bodies)
        assert all("no run was ever requested" in body["text"] for body in webhook.bodies)
        assert len(smtp.messages) == len(late)
        assert sorted(json.loads(first.cursor)) == late

        again = build_sensor_context(instance=instance, resources={"source": source}, cursor=first.cursor)
        sensor(again)
        assert len(webhook.bodies) == len(late), "an hour was told late twice"

    published = project.materialize_in_process(older.key)
    assert published.success, step_failures(published)
    with project.instance() as instance:
        third = build_sensor_context(instance=instance, resources={"source": source}, cursor=again.cursor)
        sensor(third)
    assert webhook.bodies[-1]["metadata"]["event_type"] == "flows_hour_published_late"
    assert webhook.bodies[-1]["metadata"]["event_payload"]["hour"] == older.key
    assert older.key not in json.loads(third.cursor)


def test_a_receiver_that_refuses_is_named_by_host_and_answer_and_the_token_is_never_shown():
    alert = Alert(event="hour_late", summary="hour x is late", error="e", advice="a")
    with WebhookReceiver(statuses=[404]) as webhook, pytest.raises(AlertDeliveryError) as refused:
        deliver(alert, alert_settings({"FLOWS_ALERT_WEBHOOK": webhook.url}))
    message = str(refused.value)
    assert "HTTP 404" in message and "no_service" in message and webhook.url.split("/services")[0] in message
    assert "secret-token" not in message


def test_a_receiver_answering_503_gets_the_alert_on_a_retry():
    alert = Alert(event="hour_late", summary="hour x is late", error="e", advice="a")
    with WebhookReceiver(statuses=[503]) as webhook:
        deliver(alert, alert_settings({"FLOWS_ALERT_WEBHOOK": webhook.url}))
    assert [body["text"].splitlines()[0] for body in webhook.bodies] == ["flows_pipeline: hour x is late"]


def test_a_receiver_that_is_down_is_named_without_the_token():
    alert = Alert(event="hour_late", summary="hour x is late", error="e", advice="a")
    url = f"http://127.0.0.1:{free_port()}/services/T0/B0/secret-token"
    settings = alert_settings({"FLOWS_ALERT_WEBHOOK": url})
    with pytest.raises(AlertDeliveryError) as down:
        deliver(alert, settings)
    assert "no answer after retries" in str(down.value) and "secret-token" not in str(down.value)
