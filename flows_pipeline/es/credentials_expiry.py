"""When the cluster's credentials expire: the API key's `expiration` and the server certificate's `notAfter`.

Read before each load (flow_index's plan step) and by the daily alert sensor, so that an expiry is
told days ahead instead of failing an hour at 03:00:

- the API key (ES_API_KEY): `GET _security/_authenticate` names the key the client authenticated
  with; `GET _security/api_key?id=…` gives its `expiration` (epoch ms; absent: never). An API key
  may read its own information without further privileges.
- the TLS certificate of each https node: the `notAfter` of the certificate the node presents in
  a verified handshake (Python's ssl, the CA of ES_CA_CERTS).

An unsecured cluster, a user/password login, or an answer that does not say gives no expiry:
nothing is invented. Once expired, connecting fails with its own error (es/connection.py names
an expired key, es/cluster_errors.py an expired certificate).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

from elasticsearch import ApiError, Elasticsearch, TransportError
from urllib3.util import parse_url

from flows_pipeline.es.connection import ConnectionSettings


@dataclass(frozen=True)
class Expiry:
    """One credential and when it expires (aware UTC)."""

    credential: str  # e.g. "API key flows-loader (id 7Zq…)", "TLS certificate of localhost:9224"
    expires_at: datetime
    renew: str  # what to do before then

    def days_left(self, now: datetime) -> float:
        return (self.expires_at - now).total_seconds() / 86400

    def notice(self, now: datetime) -> str:
        left = self.days_left(now)
        when = f"EXPIRED {-left:.1f} days ago" if left < 0 else f"expires in {left:.1f} days"
        return f"{self.credential} {when} ({self.expires_at:%Y-%m-%d %H:%M} UTC): {self.renew}"


def api_key_expiry(client: Elasticsearch) -> Expiry | None:
    """The expiry of the API key `client` authenticates with; None for other logins or a key that never expires."""
    try:
        me = client.security.authenticate()
        key = me.get("api_key") or {}
        if not key.get("id"):
            return None
        found = client.security.get_api_key(id=key["id"]).get("api_keys") or []
    except (ApiError, TransportError):
        return None  # security off, or the cluster does not say: the load itself will tell
    expiration = found[0].get("expiration") if found else None
    if not expiration:
        return None
    name = f"API key {key['name']}" if key.get("name") else "API key"
    return Expiry(
        credential=f"{name} (id {key['id']})",
        expires_at=datetime.fromtimestamp(expiration / 1000, UTC),
        renew="create a new key (POST _security/api_key, the README's loader role) and set ES_API_KEY",
    )


def certificate_expiry(url: str, ca_certs: str | None, timeout_s: float = 10.0) -> Expiry | None:
    """The notAfter of the certificate an https node presents (verified against `ca_certs`); None for http
    or when no verified handshake is possible (the load then fails with the TLS error itself)."""
    where = parse_url(url)
    if where.scheme != "https":
        return None
    context = ssl.create_default_context(cafile=ca_certs)
    try:
        with (
            socket.create_connection((where.host, where.port or 443), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=where.host) as tls,
        ):
            cert = tls.getpeercert()
    except (OSError, ssl.SSLError):
        return None
    if not cert or "notAfter" not in cert:
        return None
    return Expiry(
        credential=f"TLS certificate of {where.host}:{where.port or 443}",
        expires_at=datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), UTC),
        renew="renew the node's certificate (elasticsearch-certutil cert, or your CA) and reload it",
    )


def credential_expiries(client: Elasticsearch, settings: ConnectionSettings) -> list[Expiry]:
    """Every credential with an expiry: the API key, and the certificate of each https URL."""
    found = [api_key_expiry(client)] if settings.api_key else []
    found += [certificate_expiry(url.strip(), settings.ca_certs) for url in settings.url.split(",")]
    return [expiry for expiry in found if expiry is not None]


def expiring(expiries: list[Expiry], now: datetime, warn_days: int) -> list[Expiry]:
    """Those that expire within `warn_days` of `now` (or have expired)."""
    return [expiry for expiry in expiries if expiry.days_left(now) <= warn_days]


def expiry_notices(
    client: Elasticsearch, settings: ConnectionSettings, warn_days: int, now: datetime | None = None
) -> tuple[str, ...]:
    """One line per credential expiring within `warn_days` (Expiry.notice): what each load logs and records."""
    now = now or datetime.now(UTC)
    return tuple(expiry.notice(now) for expiry in expiring(credential_expiries(client, settings), now, warn_days))
