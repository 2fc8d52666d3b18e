"""Sends bulk bodies to one index with bounded in-flight requests, retries, and full accounting.

What elasticsearch-py's helpers get wrong for this job, and this module does instead:
`parallel_bulk` buffers results without bound (elasticsearch-py #1101, #547) and per-item 429s
are only retried when errors are ignored (#864). Here at most `max_in_flight` bodies exist at
once; a body refused whole for a transient reason (throttling, a timeout, no connection:
cluster_errors.py decides by the cluster's error type) is resent after a backoff, and for a
terminal reason (a block, a privilege, a bad request, a red index) fails at once. Items refused
for a state of the index that no resend changes (a write block, a red index) fail the step at
once, naming it (cluster_health.py); items throttled, or waiting for a primary that is moving,
are resent alone; any other item error is counted with its reason. Resending is always safe:
ids are fixed per row, so a resent document replaces itself.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from elasticsearch import ApiError, Elasticsearch, TransportError

from flows_pipeline.es.bulk_encoding import BulkBody
from flows_pipeline.es.cluster_errors import (
    CLUSTER_BLOCK_ADVICE,
    RED_INDEX_ADVICE,
    SHARD_UNAVAILABLE_TYPES,
    ClusterRefusedError,
    ClusterUnavailableError,
    classify_api_error,
    classify_transport_error,
    is_transient_type,
)
from flows_pipeline.es.cluster_health import explain_block, red_index_explanation
from flows_pipeline.es.connection import safe_url

log = logging.getLogger(__name__)

# A body is first sent asking only for the errors: `{"errors":false}` instead of a status for
# each of its 10,000 items (~300 KB of JSON to build, send and parse per request, ~1.5 CPU-s per
# million documents in the client); items without an error drop out of the filtered answer, so
# it holds the failed items' type and reason, but not their positions. When every failure is
# terminal that is enough; which items to resend needs the long answer.
ANY_ERRORS = "errors,items.*.error.type,items.*.error.reason"
ITEM_OUTCOMES = "errors,items.*.status,items.*.error.type,items.*.error.reason"
_KEEP_REASONS = 5


@dataclass
class BulkTally:
    indexed: int = 0
    failed: int = 0
    requests: int = 0
    retries: int = 0
    bytes_sent: int = 0
    reasons: list[str] = field(default_factory=list)

    def add(self, other: BulkTally) -> None:
        self.indexed += other.indexed
        self.failed += other.failed
        self.requests += other.requests
        self.retries += other.retries
        self.bytes_sent += other.bytes_sent
        self.reasons.extend(other.reasons[: _KEEP_REASONS - len(self.reasons)])


@dataclass(frozen=True)
class BulkRetry:
    """How often and how patiently a body (or its throttled items) is resent; defaults in resources.py."""

    max_retries: int
    initial_backoff_s: float
    max_backoff_s: float
    shard_wait_s: float  # how long a bulk request waits for an unavailable primary (the bulk `timeout`)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {self.max_retries}")

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter, so throttled senders do not retry in step."""
        return random.uniform(0, min(self.max_backoff_s, self.initial_backoff_s * 2**attempt))


class BulkSender:
    def __init__(
        self,
        client: Elasticsearch,
        index: str,
        max_in_flight: int,
        retry: BulkRetry,
        require_alias: bool = False,
        known_nodes: Mapping[str, str] | None = None,
    ) -> None:
        """`index`: the target; with `require_alias` it must be an alias, so a request to one that was
        removed is refused (per item) instead of auto-creating an index of that name.
        `known_nodes`: node id -> name of the index's nodes (cluster_health.index_nodes), so that a
        node that leaves during the load is named, not only its id."""
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._client = client
        self._index = index
        self._require_alias = require_alias
        self._max_in_flight = max_in_flight
        self._retry = retry
        self._known_nodes = known_nodes

    def send_all(self, bodies: Iterable[BulkBody]) -> BulkTally:
        """Send every body; at most `max_in_flight` are encoded-and-unsent or in flight at once."""
        tally = BulkTally()
        pending: deque[Future[BulkTally]] = deque()
        with ThreadPoolExecutor(self._max_in_flight, thread_name_prefix="bulk") as pool:
            for body in bodies:
                while len(pending) >= self._max_in_flight:
                    tally.add(pending.popleft().result())
                pending.append(pool.submit(self.send, body))
            while pending:
                tally.add(pending.popleft().result())
        return tally

    def send(self, body: BulkBody) -> BulkTally:
        tally = BulkTally()
        payload, docs = body.payload, body.docs
        outcomes = ANY_ERRORS
        retries = 0
        while True:
            tally.requests += 1
            tally.bytes_sent += len(payload)
            try:
                response = self._client.bulk(
                    index=self._index,
                    operations=payload,
                    filter_path=outcomes,
                    require_alias=self._require_alias,
                    timeout=f"{round(self._retry.shard_wait_s * 1000)}ms",
                )
            except (ApiError, TransportError) as err:
                error = self._classify(err, body, retries)
                if not error.retryable or retries >= self._retry.max_retries:
                    raise error from err
                log.warning("%s; retrying", error)
                retries = self._back_off(retries, tally)
                continue
            if not response.get("errors"):
                tally.indexed += docs
                return tally
            errors = [next(iter(item.values())).get("error") or {} for item in response.get("items", [])]
            self._raise_for_index_state([e for e in errors if e], body, retries)
            if outcomes == ANY_ERRORS:
                if errors and not any(is_transient_type(e.get("type", ""), 0) for e in errors):
                    # every failed item failed for a reason that a resend cannot change: counted
                    # from the short answer, without sending the body again
                    tally.indexed += docs - len(errors)
                    self._count_failed(errors, [0] * len(errors), tally)
                    return tally
                # Some items may succeed when resent, but the short answer does not say which:
                # send the same body again (not a retry), asking for every item's outcome. Safe,
                # as ids are fixed: documents indexed the first time replace themselves. After a
                # short jittered wait: if the items were throttled (429), the write queue is full.
                outcomes = ITEM_OUTCOMES
                time.sleep(self._retry.delay(0))
                continue
            payload, docs = self._settle_items(response["items"], payload, tally)
            if docs == 0:
                return tally
            if retries >= self._retry.max_retries:
                raise ClusterUnavailableError(
                    f"{self._describe(body, f'after {retries} retries')}: Elasticsearch at {self._url} still "
                    f"refused {docs} documents for a transient reason (throttled: 429 es_rejected_execution_exception, "
                    "or a primary shard not active yet); the cluster cannot keep up: lower FLOWS_BULK_IN_FLIGHT or "
                    "the flows_es_bulk pool's limit, and check the cluster's health"
                )
            retries = self._back_off(retries, tally)

    def _raise_for_index_state(self, errors: list[dict], body: BulkBody, retries: int) -> None:
        """Fail at once when items were refused for a state of the index: a write block (the disk
        flood stage), or a missing primary on a red index. Every later body would meet the same."""
        types = {e.get("type", "") for e in errors}
        what = self._describe(body, f"after {retries} retries" if retries else "on its first attempt")
        if "cluster_block_exception" in types:
            reason = next(e.get("reason") for e in errors if e.get("type") == "cluster_block_exception")
            try:
                why = explain_block(self._client, self._index)
            except (ApiError, TransportError) as err:
                why = f"(could not read the index's blocks: {err}) {CLUSTER_BLOCK_ADVICE}"
            raise ClusterRefusedError(
                f"{what}: Elasticsearch at {self._url} refused its documents: cluster_block_exception: {reason}; {why}"
            )
        if types & SHARD_UNAVAILABLE_TYPES and (why := self._red_index()):
            reason = next(e.get("reason") for e in errors if e.get("type") in SHARD_UNAVAILABLE_TYPES)
            raise ClusterRefusedError(
                f"{what}: Elasticsearch at {self._url} could not write its documents (unavailable_shards: {reason}): "
                f"index {self._index} is red: {why}. {RED_INDEX_ADVICE}"
            )

    def _classify(
        self, err: ApiError | TransportError, body: BulkBody, retries: int
    ) -> ClusterRefusedError | ClusterUnavailableError:
        what = self._describe(body, f"after {retries} retries" if retries else "on its first attempt")
        if isinstance(err, ApiError):
            return classify_api_error(err, what, self._url, red_index=self._red_index)
        return classify_transport_error(err, what, self._url)

    def _red_index(self) -> str | None:
        """Why the index is red, or None when it is not (or the cluster cannot tell now)."""
        try:
            return red_index_explanation(self._client, self._index, self._known_nodes)
        except (ApiError, TransportError):
            return None  # cannot tell: treat the missing shard as the transient fault it usually is

    def _back_off(self, retries: int, tally: BulkTally) -> int:
        tally.retries += 1
        time.sleep(self._retry.delay(retries))
        return retries + 1

    def _settle_items(self, items: list[dict], payload: bytes, tally: BulkTally) -> tuple[bytes, int]:
        """Count item results; return a body of only the items to retry (transient: throttled, a primary moving)."""
        lines = payload.split(b"\n")
        retry_lines: list[bytes] = []
        failed: list[dict] = []
        statuses: list[int] = []
        for i, item in enumerate(items):
            result = next(iter(item.values()))
            status = result.get("status", 0)
            error = result.get("error", {})
            if status < 300:
                tally.indexed += 1
            elif is_transient_type(error.get("type", ""), status, error.get("durability")):
                retry_lines += lines[2 * i : 2 * i + 2]
            else:
                failed.append(error)
                statuses.append(status)
        self._count_failed(failed, statuses, tally)
        return (b"\n".join(retry_lines) + b"\n" if retry_lines else b""), len(retry_lines) // 2

    @staticmethod
    def _count_failed(errors: list[dict], statuses: list[int], tally: BulkTally) -> None:
        tally.failed += len(errors)
        for error, status in zip(errors, statuses, strict=True):
            if len(tally.reasons) >= _KEEP_REASONS:
                break
            tally.reasons.append(f"{status or ''} {error.get('type')}: {error.get('reason')}".lstrip())

    @property
    def _url(self) -> str:
        return safe_url(next(iter(self._client.transport.node_pool.all())).base_url)

    def _describe(self, body: BulkBody, what: str) -> str:
        return f"bulk request to index {self._index} for rows {body.first_row}-{body.first_row + body.docs - 1} {what}"
