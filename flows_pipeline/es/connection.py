"""Connecting to Elasticsearch: one client per process, checked before any work, failing clearly.

A run against a cluster that is down, of the wrong major version, or set up wrongly (a URL that
does not parse, a CA file that is not there) must fail in seconds with the URL and what to do,
not after its first bulk request times out somewhere in a chunk step. No part of a credential is
ever printed: `ES_URL` is parsed here, by urllib3 (the parser elastic-transport itself uses), and
only its scheme, host, port and path are shown.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import elasticsearch
from elastic_transport.client_utils import basic_auth_to_header
from elasticsearch import ApiError, Elasticsearch, TransportError
from elasticsearch.serializer import NdjsonSerializer
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from flows_pipeline.errors import ConfigurationError
from flows_pipeline.es.cluster_errors import (
    ClusterRefusedError,
    ClusterUnavailableError,
    classify_api_error,
    classify_transport_error,
    error_details,
)

CLIENT_MAJOR = elasticsearch.__versionstr__.split(".")[0]
LOCAL_NODE_HINT = "start the local node with `make es-up` (scripts/es.sh up), or set ES_URL to your cluster"


@dataclass(frozen=True)
class ConnectionSettings:
    """How to reach the cluster; the defaults live in the `FlowsElasticsearch` resource."""

    url: str = field(repr=False)  # one node's URL, or several separated by commas; shown only through safe_url()
    request_timeout_s: float  # one request, a bulk body included
    api_key: str | None = field(default=None, repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    ca_certs: str | None = None  # CA bundle of a cluster with a private CA
    verify_certs: bool = True
    connect_check_timeout_s: float = 5.0  # the first request: a cluster that is down fails in seconds


class PreEncodedNdjsonSerializer(NdjsonSerializer):
    """Passes bulk bodies that are already newline-ended NDJSON bytes through untouched.

    The client's serializer copies every body twice (into a bytearray, then into bytes): two
    5 MiB copies per request, for bodies that bulk_encoding built to be sent as they are.
    """

    def dumps(self, data: object) -> bytes:
        if isinstance(data, bytes) and data.endswith(b"\n"):
            return data
        return super().dumps(data)


HIDDEN_URL = "<ES_URL, not shown: it does not parse as a URL and may hold a password>"
DEFAULT_PORTS = {"http": 80, "https": 443}


class ClusterUrlError(ConfigurationError):
    """ES_URL cannot be parsed; the message never quotes the part of it that may be a credential."""


@dataclass(frozen=True)
class ClusterUrl:
    """ES_URL, parsed: where the cluster is, and the user:password it may carry (never shown)."""

    scheme: str
    host: str
    port: int
    path: str  # a path prefix (a cluster behind a proxy), "" for none
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


def parse_cluster_url(url: str) -> ClusterUrl:
    """ES_URL split into its parts, or ClusterUrlError saying how to fix it, without its credentials.

    A password with an unencoded `/`, `?` or `#` (what `openssl rand -base64` makes) ends the
    URL's authority early: urllib3 then fails on a "port" that is the password's first part, or,
    when that part is a number, puts the rest of the password (and the host) in the path, query or
    fragment. Neither the parser's message nor any of those parts is ever shown.
    """
    try:
        parts = parse_url(url)
    except LocationParseError:
        parts = None
    rest = "".join(p or "" for p in (parts.path, parts.query, parts.fragment)) if parts else ""
    if parts is None or parts.scheme not in DEFAULT_PORTS or not parts.host or "@" in rest or parts.query:
        shown = "(not shown: it may hold a password)" if "@" in url else repr(url)
        raise ClusterUrlError(
            f"ES_URL {shown} could not be parsed as http(s)://[user:password@]host[:port][/path]. A password "
            "in a URL must be percent-encoded ('/' as %2F, '?' as %3F, '#' as %23, '@' as %40; "
            "python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=\"\"))' PASSWORD); "
            "or leave credentials out of ES_URL and set ES_USERNAME/ES_PASSWORD or ES_API_KEY"
        )
    user, _, password = (parts.auth or "").partition(":")
    return ClusterUrl(
        scheme=parts.scheme,
        host=parts.host,
        port=parts.port or DEFAULT_PORTS[parts.scheme],
        path=(parts.path or "").rstrip("/"),
        username=urllib.parse.unquote(user) if parts.auth else None,
        password=urllib.parse.unquote(password) if parts.auth else None,
    )


def node_urls(url: str) -> list[str]:
    """The nodes ES_URL names: one URL, or several separated by commas.

    A list carries no credentials: one password repeated in each URL, or different ones per node,
    belongs in ES_USERNAME/ES_PASSWORD or ES_API_KEY. The error names no part of the list, since
    any part of it may be a secret.
    """
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise ConfigurationError("ES_URL is empty: set it to the cluster's URL, or several separated by commas")
    if len(urls) > 1 and any("@" in part for part in urls):
        raise ConfigurationError(
            f"ES_URL has commas, so it is read as a list of {len(urls)} node URLs, and credentials "
            "(user:password@) are in it: a list of URLs takes none; remove them and set ES_USERNAME/ES_PASSWORD "
            "or ES_API_KEY"
        )
    return urls


def safe_url(url: str) -> str:
    """Every URL of ES_URL without user:password (nor query or fragment), comma-separated, fit for logs,
    errors and metadata; a placeholder when one does not parse (it may hold a password)."""
    try:
        return ",".join(str(parse_cluster_url(part)) for part in node_urls(url))
    except ConfigurationError:
        return HIDDEN_URL


def connect(settings: ConnectionSettings) -> Elasticsearch:
    """A client for the cluster, after checking that it answers and that its major is ours.

    With several URLs, a request that cannot reach its node (connection refused or reset) is sent
    once to each other node; the pool keeps the dead node aside, with growing pauses, until it
    answers again. Statuses and timeouts are never retried here: those retries are bulk_sender's.
    The client does not sniff: a node's publish address is often not reachable from the client
    (containers, proxies, cloud) nor in the name of its TLS certificate, and each Dagster step is a
    short-lived process that would sniff again; the URLs given are the pool.
    """
    nodes = [parse_cluster_url(url) for url in node_urls(settings.url)]
    if settings.ca_certs and not Path(settings.ca_certs).is_file():
        raise ConfigurationError(
            f"ES_CA_CERTS names {settings.ca_certs}, which is not a file: set ES_CA_CERTS to the PEM file of the "
            f"CA that signed the certificate of Elasticsearch at {safe_url(settings.url)}"
        )
    client = Elasticsearch(
        # the parsed parts, never the URL itself: the client's own parse error would quote it whole
        [{"scheme": n.scheme, "host": n.host.strip("[]"), "port": n.port, "path_prefix": n.path} for n in nodes],
        ca_certs=settings.ca_certs,
        verify_certs=settings.verify_certs,
        request_timeout=settings.request_timeout_s,
        # retries of bulk requests are ours (bulk_sender); the transport only moves to another node
        max_retries=len(nodes) - 1,
        retry_on_status=(),
        retry_on_timeout=False,
        serializers={NdjsonSerializer.mimetype: PreEncodedNdjsonSerializer()},
        **_credentials(settings, nodes[0]),
    )
    check_major(server_version(client, settings), settings.url)
    return client


def _credentials(settings: ConnectionSettings, where: ClusterUrl) -> dict:
    """The client's auth arguments: ES_API_KEY, else ES_USERNAME/ES_PASSWORD, else the URL's user:password."""
    if settings.api_key:
        return {"api_key": settings.api_key}
    if settings.username:
        return {"basic_auth": (settings.username, settings.password or "")}
    if where.username is not None:
        return {"basic_auth": (where.username, where.password or "")}
    return {}


def check_major(server: str, url: str) -> None:
    if server.split(".")[0] != CLIENT_MAJOR:
        raise ClusterRefusedError(
            f"Elasticsearch at {safe_url(url)} is version {server}, but this project's client is "
            f"{elasticsearch.__versionstr__}: the client's major version must equal the server's. "
            f"Use a {CLIENT_MAJOR}.x cluster (scripts/es.sh installs one)."
        )


def server_version(client: Elasticsearch, settings: ConnectionSettings) -> str:
    quick = client.options(request_timeout=settings.connect_check_timeout_s)
    where = safe_url(settings.url)
    try:
        try:
            return _version(quick)
        except ApiError as err:
            # A server of another major refuses this client's `compatible-with=9` headers before
            # anything else (8.x: 400 media_type_header_exception); asked in plain JSON, it says
            # its version, which check_major then names.
            if error_details(err)[0] != "media_type_header_exception":
                raise
            version = _plain_json_version(client, settings)
            if version is None:
                raise
            return version
    except ApiError as err:
        if err.status_code == 401:
            raise ClusterRefusedError(credentials_refused(err, where)) from None
        raise classify_api_error(err, "checking the server's version", where) from None
    except TransportError as err:
        error = classify_transport_error(err, "checking the server's version", where)
        if isinstance(error, ClusterUnavailableError):
            error = ClusterUnavailableError(f"{error}; {LOCAL_NODE_HINT}")
        raise error from None


def credentials_refused(err: ApiError, where: str) -> str:
    """What a 401 means, in the cluster's own words: an expired API key is named as such (ES says so
    in `additional_unsuccessful_credentials`, e.g. "API key: api key is expired"), not as a wrong one."""
    _, reason, _ = error_details(err)
    error = err.body.get("error") if isinstance(err.body, dict) else None
    others = error.get("additional_unsuccessful_credentials") if isinstance(error, dict) else None
    said = f"{reason}; {others}" if others else reason
    if "expired" in said.lower():
        advice = (
            "the API key has EXPIRED: create a new one (POST _security/api_key, the README's loader role) "
            "and set ES_API_KEY to it"
        )
    else:
        advice = "check ES_API_KEY or ES_USERNAME/ES_PASSWORD"
    return f"Elasticsearch at {where} refused the credentials (HTTP 401: {said}); {advice}"


def _version(client: Elasticsearch) -> str:
    try:
        return client.info()["version"]["number"]
    except ApiError as err:
        # the minimal distribution used locally does not serve GET /; the nodes API works everywhere
        if err.status_code != 405:
            raise
        nodes = client.nodes.info(node_id="_local", filter_path="nodes.*.version")["nodes"]
        return next(iter(nodes.values()))["version"]


def _plain_json_version(client: Elasticsearch, settings: ConnectionSettings) -> str | None:
    """The server's version asked without the client's compatibility headers, or None if it does not say."""
    auth = _credentials(settings, parse_cluster_url(node_urls(settings.url)[0]))
    headers = {"accept": "application/json"}
    if "api_key" in auth:
        headers["authorization"] = f"ApiKey {auth['api_key']}"
    elif "basic_auth" in auth:
        headers["authorization"] = basic_auth_to_header(auth["basic_auth"])
    for target in ("/", "/_nodes/_local?filter_path=nodes.*.version"):
        answer = client.transport.perform_request(
            "GET", target, headers=headers, request_timeout=settings.connect_check_timeout_s
        )
        if answer.meta.status == 200 and isinstance(answer.body, dict):
            if "version" in answer.body:
                return str(answer.body["version"]["number"])
            nodes = answer.body.get("nodes") or {}
            if nodes:
                return str(next(iter(nodes.values()))["version"])
    return None
