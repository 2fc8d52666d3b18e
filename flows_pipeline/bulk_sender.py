"""Sends bulk bodies to one index with bounded in-flight requests, retries, and full accounting.

What elasticsearch-py's helpers get wrong for this job, and this module does instead:
`parallel_bulk` buffers results without bound (elasticsearch-py #1101, #547) and per-item 429s
are only retried when errors are ignored (#864). Here at most `max_in_flight` bodies exist at
once, a body rejected whole (429, 5xx, connection error) is resent after a backoff, items
rejected with 429 are resent alone, and any other item error is counted with its reason.
Resending is always safe: ids are fixed per row, so a resent document replaces itself.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from elasticsearch import ApiError, ConnectionError, ConnectionTimeout, Elasticsearch

from flows_pipeline.bulk_encoding import BulkBody

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# A body is first sent asking only whether any item failed: `{"errors":false}` instead of a
# status for each of its 10,000 items (~300 KB of JSON to build, send and parse per request,
# ~1.5 CPU-s per million documents in the client). Which items failed needs the long answer.
ANY_ERRORS = "errors"
ITEM_OUTCOMES = "errors,items.*.status,items.*.error.type,items.*.error.reason"
_KEEP_REASONS = 5


class BulkRejectedError(RuntimeError):
    """A body that still failed after every retry."""


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
    max_retries: int = 8
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {self.max_retries}")

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter, so throttled senders do not retry in step."""
        return random.uniform(0, min(self.max_backoff_s, self.initial_backoff_s * 2**attempt))


class BulkSender:
    def __init__(self, client: Elasticsearch, index: str, max_in_flight: int, retry: BulkRetry) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._client = client
        self._index = index
        self._max_in_flight = max_in_flight
        self._retry = retry

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
                response = self._client.bulk(index=self._index, operations=payload, filter_path=outcomes)
            except ApiError as err:
                if err.status_code in RETRYABLE_STATUS and retries < self._retry.max_retries:
                    log.warning(
                        "bulk to %s got HTTP %s; retrying rows from %d", self._index, err.status_code, body.first_row
                    )
                    retries = self._back_off(retries, tally)
                    continue
                raise BulkRejectedError(self._describe(body, f"HTTP {err.status_code}: {err.message}")) from err
            except (ConnectionError, ConnectionTimeout) as err:
                if retries < self._retry.max_retries:
                    log.warning("bulk to %s: %s; retrying rows from %d", self._index, err, body.first_row)
                    retries = self._back_off(retries, tally)
                    continue
                raise BulkRejectedError(self._describe(body, str(err))) from err
            if not response.get("errors"):
                tally.indexed += docs
                return tally
            if outcomes == ANY_ERRORS:
                # Some items failed, but the short answer does not say which: send the same body
                # again (not a retry), asking for every item's outcome. Safe, as ids are fixed:
                # documents indexed the first time replace themselves. After a short jittered
                # wait: if the items were throttled (429), the node's write queue is full.
                outcomes = ITEM_OUTCOMES
                time.sleep(self._retry.delay(0))
                continue
            payload, docs = self._settle_items(response["items"], payload, tally)
            if docs == 0:
                return tally
            if retries >= self._retry.max_retries:
                raise BulkRejectedError(self._describe(body, f"{docs} documents still throttled (429) after retries"))
            retries = self._back_off(retries, tally)

    def _back_off(self, retries: int, tally: BulkTally) -> int:
        tally.retries += 1
        time.sleep(self._retry.delay(retries))
        return retries + 1

    def _settle_items(self, items: list[dict], payload: bytes, tally: BulkTally) -> tuple[bytes, int]:
        """Count item results; return a body of only the items to retry (429s)."""
        lines = payload.split(b"\n")
        retry_lines: list[bytes] = []
        for i, item in enumerate(items):
            result = next(iter(item.values()))
            status = result.get("status", 0)
            if status < 300:
                tally.indexed += 1
            elif status == 429:
                retry_lines += lines[2 * i : 2 * i + 2]
            else:
                tally.failed += 1
                if len(tally.reasons) < _KEEP_REASONS:
                    error = result.get("error", {})
                    tally.reasons.append(f"{status} {error.get('type')}: {error.get('reason')}")
        return (b"\n".join(retry_lines) + b"\n" if retry_lines else b""), len(retry_lines) // 2

    def _describe(self, body: BulkBody, what: str) -> str:
        url = next(iter(self._client.transport.node_pool.all())).base_url
        return (
            f"bulk request to index {self._index} at {url} failed for rows "
            f"{body.first_row}-{body.first_row + body.docs - 1} after {self._retry.max_retries} retries: {what}"
        )
