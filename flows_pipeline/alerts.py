"""Alerts: one message per event, to a webhook (Slack-compatible JSON) and by email (SMTP).

What is an event, and when, is decided by the Dagster sensors (orchestration/alert_sensors.py):
an hour whose run failed for good, an hour still unpublished at its deadline, credentials about
to expire. This module only words an `Alert` and delivers it.

- Webhook (FLOWS_ALERT_WEBHOOK): a JSON POST whose body Slack's incoming webhooks accept (`text`,
  `blocks`, and `metadata` with the alert's fields as `event_payload`; Mattermost, Rocket.Chat and
  Teams' Slack-compatible endpoints read `text`). Sent with requests; transient answers (429,
  5xx, connection errors) are retried by urllib3's `Retry` with backoff, honouring Retry-After.
- Email (FLOWS_ALERT_SMTP_HOST and FLOWS_ALERT_EMAIL_TO): one plain-text message by smtplib,
  STARTTLS and login when configured.

A webhook URL is a secret (Slack's path is the token): messages name its host only. The SMTP
password is never printed.
"""

from __future__ import annotations

import os
import smtplib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry, parse_url

from flows_pipeline.errors import ConfigurationError, TransientError


class AlertDeliveryError(TransientError):
    """An alert reached no receiver of a channel: the message names the channel, its host and its answer."""


@dataclass(frozen=True)
class Alert:
    """One event worth a person's attention.

    `event` is a stable name (hour_failed, hour_late, hour_published_late, credentials_expiring);
    `error` is the failure's own text (the cluster's reason included), `advice` what to do.
    """

    event: str
    summary: str  # one line, e.g. "hour 2026-12-06-03:00 failed in flow_index"
    error: str
    advice: str
    hour: str | None = None
    asset: str | None = None
    run_id: str | None = None
    link: str | None = None  # the run's page in the Dagster UI, when FLOWS_DAGSTER_URL is set

    @property
    def title(self) -> str:
        return f"flows_pipeline: {self.summary}"

    def text(self) -> str:
        """The message as plain text (email body, the webhook's `text`)."""
        lines = [self.title]
        lines += [f"{name}: {value}" for name, value in self._fields() if value]
        lines += [f"error: {self.error}", f"what to do: {self.advice}"]
        return "\n".join(lines)

    def webhook_body(self) -> dict:
        """Slack's incoming-webhook body: `text` for any client, blocks for Slack, the fields as metadata."""
        facts = "\n".join(f"*{name}*: {value}" for name, value in self._fields() if value)
        return {
            "text": self.text(),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": self.title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": facts or self.summary}},
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*error*: {self.error}"[:3000]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*what to do*: {self.advice}"[:3000]}},
            ],
            "metadata": {"event_type": f"flows_{self.event}", "event_payload": asdict(self)},
        }

    def _fields(self) -> list[tuple[str, str | None]]:
        return [("hour", self.hour), ("asset", self.asset), ("run", self.run_id), ("link", self.link)]


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go; nothing set: nowhere (the alert sensors then start stopped)."""

    webhook_url: str | None = field(default=None, repr=False)  # secret: its path is the token
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    email_from: str = "flows-pipeline@localhost"
    email_to: tuple[str, ...] = ()
    timeout_s: float = 10.0
    dagster_url: str | None = None  # links to runs, e.g. http://dagster.example:3000

    @property
    def configured(self) -> bool:
        return bool(self.webhook_url or (self.smtp_host and self.email_to))

    @property
    def channels(self) -> list[str]:
        """Where alerts go, without secrets: for logs and descriptions."""
        found = [f"webhook at {webhook_host(self.webhook_url)}"] if self.webhook_url else []
        if self.smtp_host and self.email_to:
            found.append(f"email to {', '.join(self.email_to)} via {self.smtp_host}:{self.smtp_port}")
        return found

    def run_link(self, run_id: str) -> str | None:
        return f"{self.dagster_url.rstrip('/')}/runs/{run_id}" if self.dagster_url else None


def alert_settings(environ: Mapping[str, str] = os.environ) -> AlertSettings:
    """AlertSettings from FLOWS_ALERT_* (README, Configuration).

    Raises ConfigurationError for a webhook that is not an http(s) URL, a port that is not a
    number, or a mail host without recipients.
    """
    webhook = environ.get("FLOWS_ALERT_WEBHOOK") or None
    if webhook and parse_url(webhook).scheme not in ("http", "https"):
        raise ConfigurationError("FLOWS_ALERT_WEBHOOK: expected an http:// or https:// URL (value not shown)")
    host = environ.get("FLOWS_ALERT_SMTP_HOST") or None
    recipients = tuple(a.strip() for a in environ.get("FLOWS_ALERT_EMAIL_TO", "").split(",") if a.strip())
    if host and not recipients:
        raise ConfigurationError("FLOWS_ALERT_SMTP_HOST is set but FLOWS_ALERT_EMAIL_TO names no recipient")
    port = environ.get("FLOWS_ALERT_SMTP_PORT") or "25"
    if not port.isdigit():
        raise ConfigurationError(f"FLOWS_ALERT_SMTP_PORT={port!r}: expected a port number")
    return AlertSettings(
        webhook_url=webhook,
        smtp_host=host,
        smtp_port=int(port),
        smtp_starttls=environ.get("FLOWS_ALERT_SMTP_STARTTLS", "false").lower() in ("1", "true", "yes"),
        smtp_username=environ.get("FLOWS_ALERT_SMTP_USERNAME") or None,
        smtp_password=environ.get("FLOWS_ALERT_SMTP_PASSWORD") or None,
        email_from=environ.get("FLOWS_ALERT_EMAIL_FROM") or AlertSettings.email_from,
        email_to=recipients,
        dagster_url=environ.get("FLOWS_DAGSTER_URL") or None,
    )


def webhook_host(url: str) -> str:
    """scheme://host:port of a webhook URL: what messages may show of it."""
    parsed = parse_url(url)
    return f"{parsed.scheme}://{parsed.netloc}"


def deliver(alert: Alert, settings: AlertSettings) -> list[str]:
    """Send `alert` to every configured channel; returns where it went (no secrets).

    Raises AlertDeliveryError naming each channel that failed after its retries and its answer;
    channels that worked have received the alert (a failure of one does not hold back the other).
    """
    channels = [_post] if settings.webhook_url else []
    if settings.smtp_host and settings.email_to:
        channels.append(_mail)
    sent, failed = [], []
    for send in channels:
        try:
            sent.append(send(alert, settings))
        except AlertDeliveryError as err:
            failed.append(str(err))
    if failed:
        raise AlertDeliveryError(f"alert {alert.summary!r} not delivered: " + "; ".join(failed))
    return sent


def _post(alert: Alert, settings: AlertSettings) -> str:
    where = webhook_host(settings.webhook_url)
    retry = Retry(total=3, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=None)
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.mount("https://", HTTPAdapter(max_retries=retry))
        try:
            answer = session.post(settings.webhook_url, json=alert.webhook_body(), timeout=settings.timeout_s)
        except requests.RequestException as err:
            reason = str(err).replace(parse_url(settings.webhook_url).request_uri, "/…")
            raise AlertDeliveryError(
                f"webhook at {where}: no answer after retries ({type(err).__name__}: {reason}); "
                "check that the receiver is up and FLOWS_ALERT_WEBHOOK is right"
            ) from None
    if answer.status_code >= 400:
        raise AlertDeliveryError(
            f"webhook at {where} answered HTTP {answer.status_code}: {answer.text[:300]!r}; "
            "check FLOWS_ALERT_WEBHOOK (a revoked Slack webhook answers 403/404 no_service)"
        )
    return f"webhook at {where}"


def _mail(alert: Alert, settings: AlertSettings) -> str:
    message = EmailMessage()
    message["Subject"] = alert.title
    message["From"] = settings.email_from
    message["To"] = ", ".join(settings.email_to)
    message["X-Flows-Event"] = alert.event
    message.set_content(alert.text())
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.timeout_s) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password or "")
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as err:
        raise AlertDeliveryError(
            f"SMTP server {where} refused the login of {settings.smtp_username!r} ({err.smtp_code}); "
            "check FLOWS_ALERT_SMTP_USERNAME/FLOWS_ALERT_SMTP_PASSWORD"
        ) from None
    except (smtplib.SMTPException, OSError) as err:
        raise AlertDeliveryError(
            f"SMTP server {where}: {type(err).__name__}: {err}; check FLOWS_ALERT_SMTP_HOST/_PORT and the recipients"
        ) from None
    return f"email to {', '.join(settings.email_to)} via {where}"
