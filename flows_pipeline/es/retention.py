"""Retention in Elasticsearch: whole buckets, indices of the hourly layout, and summary documents.

A bucket is deleted only once every hour it can hold has expired (its end is at or before the
cutoff): a bucket never goes while one of its hours is inside the retention window, so with week
buckets up to a week more than the window is kept. Deleting whole indices is the cheap way
(no per-document deletes, space freed at once); summary documents, a few hundred an hour, are
deleted by id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from elasticsearch import Elasticsearch

from flows_pipeline.es.index_layout import IndexLayout
from flows_pipeline.hour import KEY_FORMAT

_HOUR_ALIAS = re.compile(r"-(\d{4})\.(\d{2})\.(\d{2})-(\d{2})$")
_LEGACY_INDEX = re.compile(r"-(\d{4})\.(\d{2})\.(\d{2})-(\d{2})-[0-9a-z]{8}$")


@dataclass
class IndicesDeleted:
    indices: list[str] = field(default_factory=list)
    hours: set[str] = field(default_factory=set)  # partition keys published in the deleted indices
    bytes: int = 0
    summary_documents: int = 0


def _bucket_span(layout: IndexLayout, index: str) -> tuple[datetime, datetime] | None:
    for span, days in (("day", 1), ("week", 7)):
        prefix = f"{layout.prefix}-{span}-"
        if index.startswith(prefix):
            try:
                start = datetime.strptime(index[len(prefix) :], "%Y.%m.%d").replace(tzinfo=UTC)
            except ValueError:
                return None
            return start, start + timedelta(days=days)
    return None


def _hour_of_name(pattern: re.Pattern, name: str) -> datetime | None:
    match = pattern.search(name)
    if not match:
        return None
    year, month, day, hour = (int(g) for g in match.groups())
    return datetime(year, month, day, hour, tzinfo=UTC)


def expired_indices(client: Elasticsearch, layout: IndexLayout, cutoff: datetime) -> dict[str, int]:
    """Buckets all of whose hours ended by `cutoff`, and hourly-layout indices of such hours: name -> bytes."""
    found = client.cat.indices(
        index=f"{layout.prefix}-*", expand_wildcards="all", format="json", h="index,store.size", bytes="b"
    )
    expired = {}
    for entry in found:
        name = entry["index"]
        if name.startswith(f"{layout.prefix}-") and name.count("-") > layout.prefix.count("-") + 1:
            span = _bucket_span(layout, name)
            legacy = _hour_of_name(_LEGACY_INDEX, name) if span is None else None
            end = span[1] if span else (legacy + timedelta(hours=1) if legacy else None)
            if end is not None and end <= cutoff:
                expired[name] = int(entry.get("store.size") or 0)
    return expired


def delete_expired(client: Elasticsearch, layout: IndexLayout, cutoff: datetime) -> IndicesDeleted:
    """Delete expired buckets and hourly indices, and the summary documents of expired hours."""
    deleted = IndicesDeleted()
    for name, size in sorted(expired_indices(client, layout, cutoff).items()):
        aliases = client.indices.get_alias(index=name, expand_wildcards="all")[name]["aliases"]
        hours = [_hour_of_name(_HOUR_ALIAS, alias) for alias in aliases]
        deleted.hours |= {hour.strftime(KEY_FORMAT) for hour in hours if hour is not None}
        client.indices.delete(index=name, expand_wildcards="all")
        deleted.indices.append(name)
        deleted.bytes += size
    deleted.summary_documents = delete_summary_documents(client, layout.summary_index, cutoff)
    return deleted


def delete_summary_documents(client: Elasticsearch, index: str, cutoff: datetime) -> int:
    """Delete the summary documents of every hour that ended by `cutoff`, by id, 10,000 at a time."""
    if not client.indices.exists(index=index):
        return 0
    last_start = (cutoff - timedelta(hours=1)).strftime(KEY_FORMAT)
    query = {"range": {"hour": {"lte": last_start}}}  # keys sort as times: YYYY-MM-DD-HH:MM
    deleted = 0
    while True:
        hits = client.search(index=index, query=query, size=10_000, _source=False)["hits"]["hits"]
        if not hits:
            return deleted
        response = client.bulk(
            index=index, operations=[{"delete": {"_id": hit["_id"]}} for hit in hits], refresh="wait_for"
        )
        deleted += sum(1 for item in response["items"] if item["delete"].get("result") == "deleted")


def retention_cutoff(now: datetime, days: int) -> datetime | None:
    """Hours that ended at or before this time are expired; None when retention is off (0 days)."""
    return now - timedelta(days=days) if days > 0 else None
