"""Connecting to Elasticsearch: one client per process, checked before any work, failing clearly.

A run against a cluster that is down, or of the wrong major version, must fail in seconds with
the URL and what to do, not after its first bulk request times out somewhere in a chunk step.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import elasticsearch
from elasticsearch import ApiError, Elasticsearch, TransportError
from elasticsearch.serializer import NdjsonSerializer

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

    url: str  # one node's URL, or several separated by commas (node_urls)
    request_timeout_s: float  # one request, a bulk body included
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
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


def safe_url(url: str) -> str:
    """The URL without user:password, fit for logs, errors and metadata."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


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


def safe_urls(url: str) -> str:
    """Every URL of ES_URL without credentials, comma-separated, fit for logs, errors and metadata."""
    return ",".join(safe_url(part) for part in node_urls(url))


def connect(settings: ConnectionSettings) -> Elasticsearch:
    """A client for the cluster, after checking that it answers and that its major is ours.

    With several URLs, a request that cannot reach its node (connection refused or reset) is sent
    once to each other node; the pool keeps the dead node aside, with growing pauses, until it
    answers again. Statuses and timeouts are never retried here: those retries are bulk_sender's.
    The client does not sniff: a node's publish address is often not reachable from the client
    (containers, proxies, cloud) nor in the name of its TLS certificate, and each Dagster step is a
    short-lived process that would sniff again; the URLs given are the pool.
    """
    urls = node_urls(settings.url)
    auth: dict = {}
    if settings.api_key:
        auth["api_key"] = settings.api_key
    elif settings.username:
        auth["basic_auth"] = (settings.username, settings.password or "")
    client = Elasticsearch(
        urls,
        ca_certs=settings.ca_certs,
        verify_certs=settings.verify_certs,
        request_timeout=settings.request_timeout_s,
        # retries of bulk requests are ours (bulk_sender); the transport only moves to another node
        max_retries=len(urls) - 1,
        retry_on_status=(),
        retry_on_timeout=False,
        serializers={NdjsonSerializer.mimetype: PreEncodedNdjsonSerializer()},
        **auth,
    )
    check_major(server_version(client, settings), settings.url)
    return client


def check_major(server: str, url: str) -> None:
    if server.split(".")[0] != CLIENT_MAJOR:
        raise ClusterRefusedError(
            f"Elasticsearch at {safe_urls(url)} is version {server}, but this project's client is "
            f"{elasticsearch.__versionstr__}: the client's major version must equal the server's. "
            f"Use a {CLIENT_MAJOR}.x cluster (scripts/es.sh installs one)."
        )


def server_version(client: Elasticsearch, settings: ConnectionSettings) -> str:
    quick = client.options(request_timeout=settings.connect_check_timeout_s)
    where = safe_urls(settings.url)
    try:
        try:
            return quick.info()["version"]["number"]
        except ApiError as err:
            if error_details(err)[0] == "media_type_header_exception":
                return other_major_version(quick)
            # the minimal distribution used locally does not serve GET /; the nodes API works everywhere
            if err.status_code != 405:
                raise
            nodes = quick.nodes.info(node_id="_local", filter_path="nodes.*.version")["nodes"]
            return next(iter(nodes.values()))["version"]
    except ApiError as err:
        if err.status_code == 401:
            raise ClusterRefusedError(
                f"Elasticsearch at {where} refused the credentials (HTTP 401); "
                "check ES_API_KEY or ES_USERNAME/ES_PASSWORD"
            ) from None
        raise classify_api_error(err, "checking the server's version", where) from None
    except TransportError as err:
        error = classify_transport_error(err, "checking the server's version", where)
        if isinstance(error, ClusterUnavailableError):
            error = ClusterUnavailableError(f"{error}; {LOCAL_NODE_HINT}")
        raise error from None


def other_major_version(client: Elasticsearch) -> str:
    """The version of a server that refuses this client's `compatible-with` media type (another major).

    Asked through the transport with plain JSON, which every version accepts; the client itself
    would rewrite the header. The client's own headers carry its credentials.
    """
    headers = {**client._headers, "accept": "application/json"}
    answer = client.transport.perform_request("GET", "/_nodes/_local?filter_path=nodes.*.version", headers=headers)
    return next(iter(answer.body["nodes"].values()))["version"]
