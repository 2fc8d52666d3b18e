"""Deleting the documents of replaced attempts, once no alias selects them.

A re-run loads the hour as a new attempt beside the old one and publishes it by moving the hour's
alias; searches never see the old documents again, so they can go at the cluster's pace, after the
publication. Deleting them one bulk body at a time ran at ~56,000 documents a second, longer than
the load itself at 7.85M (issue 23). So:

- where the cluster has `_delete_by_query` (the reindex module, in every default distribution),
  one task per attempt in `in_flight` slices (sliced by id, so a bucket of one shard is deleted in
  parallel too), followed through the tasks API: a request that waited for millions of deletes
  would outlast any request timeout;
- elsewhere (the integ-test-zip distribution the suite runs has only four modules and no reindex),
  bulk deletes by id, `in_flight` bodies at once. The ids are known without reading them: an
  attempt's documents are numbered 0..max(`event.sequence`).

A document that cannot be deleted now is reported with the cluster's reason, not retried, and
never fails the step (the hour is already published): it is invisible to searches (no alias
selects its attempt) and the retention job removes it with its bucket.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from elasticsearch import ApiError, Elasticsearch, TransportError

from flows_pipeline.es.flow_mapping import ATTEMPT_FIELD

log = logging.getLogger(__name__)

DELETE_BATCH = 10_000  # ids per bulk delete body (~400 KB)
DELETE_BY_QUERY_MODULE = "reindex"  # the module that brings _delete_by_query, _update_by_query, _reindex
TASK_POLL = "30s"  # how long one tasks API request waits for a delete-by-query task to complete


@dataclass
class Deletion:
    """What deleting replaced attempts did: documents deleted, how, and what was left."""

    deleted: int = 0
    method: str = "none"  # "delete_by_query", "bulk by id" or "none" (nothing was replaced)
    left: int = 0  # documents the cluster did not delete (invisible; see the module)
    problems: list[str] = field(default_factory=list)  # the cluster's reasons, the first few


def delete_replaced(client: Elasticsearch, replaced: tuple[tuple[str, str], ...], in_flight: int = 4) -> Deletion:
    """Delete the documents of the (bucket, attempt token) pairs no alias selects any more.

    `in_flight`: delete-by-query slices, or bulk delete bodies sent at once on a cluster without
    `_delete_by_query`. Raises nothing the cluster answers: what it refused is in `left`/`problems`.
    """
    done = Deletion()
    if not replaced:
        return done
    if has_delete_by_query(client):
        done.method = "delete_by_query"
        for bucket, token in replaced:
            _delete_by_query(client, bucket, token, in_flight, done)
    else:
        done.method = "bulk by id"
        with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="delete-replaced") as pool:
            pending: set[Future] = set()
            for bucket, body in _delete_bodies(client, replaced, done):
                if len(pending) >= in_flight:  # in_flight bodies on the wire, one more being built at most
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    _count(done, finished)
                pending.add(pool.submit(_bulk_delete, client, bucket, body))
            _count(done, wait(pending).done)
        try:
            for bucket in {bucket for bucket, _ in replaced}:
                client.indices.refresh(index=bucket)  # so the bucket's document count (_cat/indices) is right
        except (ApiError, TransportError) as err:
            done.problems.append(f"refresh after deleting: {err}"[:300])
    if done.left:
        log.warning("%d documents of replaced attempts were not deleted: %s", done.left, "; ".join(done.problems))
    return done


def has_delete_by_query(client: Elasticsearch) -> bool:
    """Whether every node has the reindex module (`GET _nodes/plugins`); False when it cannot be told,
    e.g. for a key without the `monitor` cluster privilege: bulk deletes by id work everywhere."""
    try:
        nodes = client.nodes.info(metric="plugins", filter_path="nodes.*.modules.name")["nodes"]
    except (ApiError, TransportError):
        return False
    return bool(nodes) and all(
        DELETE_BY_QUERY_MODULE in {module["name"] for module in node.get("modules", [])} for node in nodes.values()
    )


def _delete_bodies(
    client: Elasticsearch, replaced: tuple[tuple[str, str], ...], done: Deletion
) -> Iterator[tuple[str, bytes]]:
    """(bucket, NDJSON body of up to DELETE_BATCH deletes by id), lazily, for every replaced attempt."""
    for bucket, token in replaced:
        try:
            last = client.search(
                index=bucket, size=0, query=_attempt(token), aggs={"last": {"max": {"field": "event.sequence"}}}
            )
        except (ApiError, TransportError) as err:
            done.left += 1  # at least: how many is unknown; the bucket's count tells
            done.problems.append(f"{bucket}: finding {token}'s documents: {err}"[:300])
            continue
        rows = last["aggregations"]["last"]["value"]
        if rows is None:
            continue
        prefix = id_prefix_of(token).encode()
        for first in range(0, int(rows) + 1, DELETE_BATCH):
            ids = range(first, min(first + DELETE_BATCH, int(rows) + 1))
            yield bucket, b"".join(b'{"delete":{"_id":"%s%d"}}\n' % (prefix, i) for i in ids)


def _delete_by_query(client: Elasticsearch, bucket: str, token: str, slices: int, done: Deletion) -> None:
    """One attempt's documents by a delete-by-query task, followed to its end through the tasks API."""
    try:
        task = client.delete_by_query(
            index=bucket, query=_attempt(token), slices=slices, conflicts="proceed", refresh=True,
            wait_for_completion=False,
        )["task"]  # fmt: skip
        while not (status := client.tasks.get(task_id=task, wait_for_completion=True, timeout=TASK_POLL))["completed"]:
            pass
    except (ApiError, TransportError) as err:
        done.problems.append(f"{bucket}: delete-by-query of {token}: {err}"[:300])
        done.left += 1  # at least: how many is unknown; the bucket's count tells
        return
    result = status.get("response", {})
    done.deleted += result.get("deleted", 0)
    done.left += max(0, result.get("total", 0) - result.get("deleted", 0))
    done.problems += [str(f.get("cause", f))[:300] for f in (result.get("failures") or [])[:3]]
    if error := status.get("error"):
        done.problems.append(str(error.get("reason", error))[:300])


def _bulk_delete(client: Elasticsearch, bucket: str, body: bytes) -> tuple[int, int, list[str]]:
    """(deleted, failed, the cluster's reasons) of one bulk delete body; not_found is neither."""
    try:
        response = client.bulk(index=bucket, operations=body, filter_path="items.*.result,items.*.error")
    except (ApiError, TransportError) as err:  # the whole body: none of its ids is known deleted
        return 0, body.count(b"\n"), [f"{bucket}: {err}"[:300]]
    deleted = failed = 0
    reasons = []
    for item in response.get("items", []):
        outcome = item["delete"]
        if outcome.get("result") == "deleted":
            deleted += 1
        elif "error" in outcome:
            failed += 1
            if len(reasons) < 3:
                reasons.append(str(outcome["error"].get("reason", outcome["error"]))[:300])
    return deleted, failed, reasons


def _count(done: Deletion, finished: set[Future]) -> None:
    for future in finished:
        deleted, failed, reasons = future.result()
        done.deleted += deleted
        done.left += failed
        done.problems += reasons[: max(0, 3 - len(done.problems))]


def _attempt(token: str) -> dict:
    return {"term": {ATTEMPT_FIELD: token}}


def id_prefix_of(token: str) -> str:
    """The id prefix of an attempt's documents, from its token (<YYYY.MM.DD-HH>-<run8>-<ms>): <run8>-<DDHH>-."""
    hour_label, run8, _ = token.rsplit("-", 2)
    day, hh = hour_label.split("-")
    return f"{run8}-{day[-2:]}{hh}-"
