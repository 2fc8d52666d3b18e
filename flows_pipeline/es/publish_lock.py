"""A lease in Elasticsearch that lets one publication at a time rewrite the flow aliases.

Publishing an hour is a read-modify-write of its bucket's alias filters (the read alias lists
the published attempts of every hour of the bucket). Two publications at once, of two hours of
one day or of two runs of one hour, would each write a filter missing the other's hour. So
publications hold this lock: a document created with `op_type=create` (only one creator
succeeds) carrying its holder and an expiry. A holder that dies (SIGKILL, a lost host) stops
renewing nothing: the next publisher finds the lease expired and takes it over with a
compare-and-swap delete (`if_seq_no`/`if_primary_term`), so a killed holder blocks others for
at most the lease. It works across Dagster instances and hosts, which a Dagster pool does not,
and a pool slot of a killed run is not freed (dagster-io/dagster#32560).

Expiry compares the clocks of the publishing hosts: keep them in sync (NTP), as the lease
(120 s) is far longer than a publication (well under a second of alias work).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

from elasticsearch import ConflictError, Elasticsearch, NotFoundError

from flows_pipeline.es.cluster_errors import ClusterUnavailableError

LOCK_ID = "publish"
_MAPPING = {"dynamic": "strict", "properties": {"holder": {"type": "keyword"}, "expires_ms": {"type": "long"}}}


def _now_ms() -> int:
    return int(time.time() * 1000)


def ensure_lock_index(client: Elasticsearch, index: str) -> None:
    """The hidden one-document index of the lock; created with its own mapping (no template applies)."""
    if client.indices.exists(index=index, expand_wildcards="all"):
        return
    client.options(ignore_status=400).indices.create(
        index=index,
        mappings=_MAPPING,
        settings={"index": {"hidden": True, "number_of_shards": 1, "auto_expand_replicas": "0-1"}},
    )


@contextmanager
def publish_lock(
    client: Elasticsearch, index: str, holder: str, lease_s: float = 120.0, wait_s: float = 300.0
) -> Iterator[None]:
    """Hold the publication lease while the block runs.

    Raises ClusterUnavailableError (transient) when another holder keeps a valid lease for
    longer than `wait_s` seconds.
    """
    ensure_lock_index(client, index)
    deadline = time.monotonic() + wait_s
    pause = 0.05
    while True:
        try:
            created = client.create(
                index=index,
                id=LOCK_ID,
                document={"holder": holder, "expires_ms": _now_ms() + int(lease_s * 1000)},
                refresh=False,
            )
            break
        except ConflictError:
            held = _current(client, index)
            if held is not None and held["_source"]["expires_ms"] < _now_ms():
                _take_over(client, index, held)
                continue
            if time.monotonic() > deadline:
                who = held["_source"]["holder"] if held else "?"
                raise ClusterUnavailableError(
                    f"could not take the publication lock {index}/{LOCK_ID} within {wait_s:.0f} s: {who} holds it; "
                    "another publication is running (or its lease of "
                    f"{lease_s:.0f} s has not run out yet); the step is retried"
                ) from None
            time.sleep(random.uniform(0, pause))
            pause = min(pause * 2, 2.0)
    try:
        yield
    finally:
        client.options(ignore_status=(404, 409)).delete(
            index=index, id=LOCK_ID, if_seq_no=created["_seq_no"], if_primary_term=created["_primary_term"]
        )


def _current(client: Elasticsearch, index: str) -> dict | None:
    try:
        return client.get(index=index, id=LOCK_ID)
    except NotFoundError:
        return None


def _take_over(client: Elasticsearch, index: str, held: dict) -> None:
    """Delete an expired lease, unless someone else changed it meanwhile (then the loop looks again)."""
    client.options(ignore_status=(404, 409)).delete(
        index=index, id=LOCK_ID, if_seq_no=held["_seq_no"], if_primary_term=held["_primary_term"]
    )
