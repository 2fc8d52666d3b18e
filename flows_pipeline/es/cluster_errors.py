"""What the cluster's refusals mean: terminal or transient, by Elasticsearch's own error type.

The HTTP status alone misleads. A 429 is throttling when its type is
`es_rejected_execution_exception` (a full write queue), but a `cluster_block_exception` (the
disk flood-stage watermark set `read_only_allow_delete`) comes as 429 too and no resend lifts
it; a 503 `unavailable_shards_exception` heals when a primary is being relocated, never when the
index is red because the node holding it is gone. So the error `type` decides, and for a missing
shard, the index's health.

Every message says what failed (the operation, the index, the URL without credentials), the
cluster's own `type` and `reason` (with `caused_by` where it says more), and what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from elastic_transport import TlsError
from elasticsearch import ApiError, TransportError

from flows_pipeline.errors import TerminalError, TransientError

# Faults of a busy or briefly disturbed cluster, which heal without anyone acting.
TRANSIENT_TYPES = frozenset(
    {
        "es_rejected_execution_exception",  # a thread pool's queue is full: throttling
        "circuit_breaking_exception",  # memory pressure (unless its durability is PERMANENT)
        "process_cluster_event_timeout_exception",
        "receive_timeout_transport_exception",
        "node_not_connected_exception",
        "node_disconnected_exception",
        "connect_transport_exception",
        "node_closed_exception",
        "no_shard_available_action_exception",
        "unavailable_shards_exception",  # unless the index is red (shard_unavailable_is_terminal)
        "primary_missing_action_exception",
        "retry_on_primary_exception",
        "shard_not_in_primary_mode_exception",
        "elasticsearch_timeout_exception",
        "timeout_exception",
    }
)
SHARD_UNAVAILABLE_TYPES = frozenset(
    {"unavailable_shards_exception", "no_shard_available_action_exception", "primary_missing_action_exception"}
)
# Statuses that mean "try again later" when the body names no type we know.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})

CLUSTER_BLOCK_ADVICE = (
    "a block on the index or the cluster stops writes: when it is the disk flood-stage watermark "
    "(read_only_allow_delete), free disk space on the data nodes or raise "
    "cluster.routing.allocation.disk.watermark.flood_stage; Elasticsearch lifts the block once the "
    "disk is below the high watermark. Then re-materialize the hour"
)
_ADVICE = {
    "cluster_block_exception": CLUSTER_BLOCK_ADVICE,
    "security_exception": (
        "the credentials lack a privilege: grant the privilege named in the reason (the README's "
        "'Production cluster' lists the role), or use ES_API_KEY / ES_USERNAME of a user that has it"
    ),
    "index_not_found_exception": "the index is gone (deleted by another run or by hand): re-materialize the hour",
    "media_type_header_exception": "the server is not of this client's major version: use a matching cluster",
}
RED_INDEX_ADVICE = (
    "A resend cannot write to it: bring back the node that left, or fix what the nodes' deciders name (free disk "
    "space past a watermark); then re-materialize the hour. If the node is gone for good, the bucket index (the "
    "day or week) lost that shard's documents: delete the bucket, then re-materialize its hours on the live nodes"
)
# Elasticsearch refuses an index (or more replicas) beyond cluster.max_shards_per_node x data nodes
SHARD_LIMIT_ADVICE = (
    "the cluster's shard limit is reached (replicas count, assigned or not): delete or close indices of hours no "
    "longer needed, or raise cluster.max_shards_per_node; then re-materialize the hour"
)
_TERMINAL_ADVICE = "a retry cannot change this; fix the cause, then re-materialize the hour"
_TRANSIENT_ADVICE = (
    "a transient fault (retried where the step allows it); if it persists, check the cluster's health and load"
)


class ClusterRefusedError(TerminalError):
    """Elasticsearch refused a request for a reason that resending cannot change."""


class ClusterUnavailableError(TransientError):
    """Elasticsearch could not serve a request now: unreachable, throttling, a timeout."""


def error_details(err: ApiError) -> tuple[str, str, str]:
    """(type, reason, caused_by) from an error answer; empty strings where the body has none."""
    body: Any = err.body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        caused = error.get("caused_by") or {}
        caused_text = f"{caused.get('type')}: {caused.get('reason')}" if caused else ""
        return str(error.get("type", "")), str(error.get("reason", "")), caused_text
    if isinstance(error, str):
        return "", error, ""
    return "", str(err.message), ""


def is_transient_type(error_type: str, status: int, durability: str | None = None) -> bool:
    """Whether an error of this type (and HTTP status, when the type is unknown) may heal alone."""
    if error_type == "circuit_breaking_exception":
        return durability != "PERMANENT"
    if error_type in TRANSIENT_TYPES:
        return True
    if error_type:
        return False
    return status in TRANSIENT_STATUS


def classify_api_error(
    err: ApiError,
    what: str,
    url: str,
    red_index: Callable[[], str | None] | None = None,
) -> ClusterRefusedError | ClusterUnavailableError:
    """The project's error for an error answer of the cluster.

    `what` names the operation and its target ("bulk request to index X for rows 0-9999");
    `url` is the cluster's URL without credentials. `red_index`, when given, is asked for a
    missing-shard error: it says why the index is red (its missing node), or None when it is not;
    a red index does not heal by resending, so the error is terminal.
    """
    error_type, reason, caused_by = error_details(err)
    status = err.status_code
    error = err.body.get("error") if isinstance(err.body, dict) else None
    durability = error.get("durability") if isinstance(error, dict) else None
    transient = is_transient_type(error_type, status, durability)
    advice = _ADVICE.get(error_type, _TRANSIENT_ADVICE if transient else _TERMINAL_ADVICE)
    if error_type == "validation_exception" and "maximum normal shards open" in reason:
        advice = SHARD_LIMIT_ADVICE
    if transient and error_type in SHARD_UNAVAILABLE_TYPES and red_index is not None and (why := red_index()):
        transient = False
        advice = f"the index is red: {why}. {RED_INDEX_ADVICE}"
    cause = f" (caused by {caused_by})" if caused_by else ""
    message = (
        f"{what}: Elasticsearch at {url} answered HTTP {status} {error_type or 'error'}: {reason}{cause}; {advice}"
    )
    cls = ClusterUnavailableError if transient else ClusterRefusedError
    classified = cls(message)
    classified.status = status
    classified.error_type = error_type
    return classified


def classify_transport_error(err: TransportError, what: str, url: str) -> ClusterRefusedError | ClusterUnavailableError:
    """The project's error for a request that got no answer: TLS refusals are terminal, the rest transient."""
    if isinstance(err, TlsError) and "certificate has expired" in str(err.message):
        return ClusterRefusedError(
            f"{what}: the TLS certificate of Elasticsearch at {url} has EXPIRED ({err.message}); renew the "
            "node's certificate (e.g. elasticsearch-certutil cert) and reload it: ES_CA_CERTS is not the cause"
        )
    if isinstance(err, TlsError):
        return ClusterRefusedError(
            f"{what}: TLS verification of Elasticsearch at {url} failed ({err.message}); set ES_CA_CERTS to the CA "
            "bundle that signed the cluster's certificate (a file that exists), or check the URL's host name"
        )
    return ClusterUnavailableError(
        f"{what}: Elasticsearch at {url} is unreachable ({type(err).__name__}: {err.message}); {_TRANSIENT_ADVICE}"
    )


def cluster_error(err: ApiError | TransportError, what: str) -> ClusterRefusedError | ClusterUnavailableError:
    """The project's error for any client error, the node's URL taken from the answer (no credentials in it)."""
    if isinstance(err, ApiError):
        node = err.meta.node
        return classify_api_error(err, what, f"{node.scheme}://{node.host}:{node.port}")
    return classify_transport_error(err, what, "the cluster")
