"""The life of an hour in Elasticsearch: bucket, load attempt, verification, atomic publication.

Layout (index_layout.py): the hours of a day (or week) share one hidden bucket index; every
document carries its load attempt (`flows.attempt`); the hour alias and the read alias are
filtered aliases selecting the published attempt(s). A load writes through its own hidden
attempt alias with `require_alias`. Publishing an hour is one `_aliases` call, made while holding
the publication lease (publish_lock.py), after the attempt was refreshed and verified: it points
the hour alias at the new attempt, rewrites the bucket's read-alias filter, removes the aliases of
earlier attempts of the hour, removes the hour from any other index (a bucket of another span, or
an index of the hourly layout, which is deleted in the same call). So a search sees the old hour
or the new one, never half of one nor both. The replaced attempts' documents, no longer selected
by any alias, are deleted afterwards by id (core APIs only: delete-by-query is a module that not
every distribution has). A failed or killed load is never selected by any alias; the next
successful load of the hour deletes it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass

from elasticsearch import ApiError, Elasticsearch, NotFoundError

from flows_pipeline.errors import TerminalError
from flows_pipeline.es.cluster_errors import ClusterRefusedError
from flows_pipeline.es.cluster_health import check_can_create, check_created
from flows_pipeline.es.flow_mapping import ATTEMPT_FIELD, ES_FIELD_TYPES, es_properties
from flows_pipeline.es.index_layout import IndexLayout
from flows_pipeline.es.publish_lock import publish_lock
from flows_pipeline.es.replaced_attempts import id_prefix_of
from flows_pipeline.hour import MS_PER_HOUR, Hour


class IndexVerificationError(TerminalError):
    """The attempt does not hold exactly the table's rows; the hour is not published."""


class AttemptReplacedError(TerminalError):
    """The load's attempt alias is gone: a later run of the hour published (or it was cleaned)."""


@dataclass(frozen=True)
class LoadAttempt:
    """One run's load of one hour: where its documents go and how they are tagged."""

    alias: str  # <prefix>-YYYY.MM.DD-HH-<run8>: hidden, the write target, what an operator finds
    bucket: str  # the bucket index behind the alias
    token: str  # flows.attempt of its documents: <hour label>-<run8>-<created, epoch ms>
    id_prefix: str  # document ids are <id_prefix><row>: unique within a bucket, fixed per row

    @property
    def created_ms(self) -> int:
        return token_created_ms(self.token)


def token_created_ms(token: str) -> int:
    return int(token.rsplit("-", 1)[1])


def bucket_mappings() -> dict:
    """Every flow field typed explicitly; `dynamic: strict` makes a stray field an error, never a guess."""
    return {"dynamic": "strict", "_source": {"enabled": True}, "properties": es_properties()}


def bucket_settings(layout: IndexLayout) -> dict:
    return {
        "index": {
            "hidden": True,  # searched through the aliases only: `<prefix>-*` must not see unpublished loads
            "number_of_shards": layout.shards,
            "number_of_replicas": layout.replicas,
            # nothing is searchable before publication refreshes the bucket; no periodic refresh
            # competes with loading (measured on this 2-core machine: refresh is indexing CPU)
            "refresh_interval": "-1",
            # the flow documents are final as encoded: no ingest pipeline of the site may change them
            "default_pipeline": "_none",
            "final_pipeline": "_none",
        }
    }


def ensure_bucket(client: Elasticsearch, layout: IndexLayout, url: str, hour: Hour) -> str:
    """The hour's bucket index, created (after checking the cluster has room) if it does not exist yet.

    A bucket created by an earlier version gets the fields added since (source.bytes, ...): adding
    fields is all a put-mapping request may do, so a changed type is refused by the cluster, named.
    """
    bucket = layout.bucket_index(hour)
    if client.indices.exists(index=bucket, expand_wildcards="all"):
        client.indices.put_mapping(index=bucket, expand_wildcards="all", properties=es_properties())
        return bucket
    check_can_create(client, url, index=bucket, shards=layout.shards, replicas=layout.replicas)
    # the hourly layout's template (priority 100 on <prefix>-*) would otherwise still apply to new indices
    client.options(ignore_status=404).indices.delete_index_template(name=layout.legacy_template)
    try:
        created = client.indices.create(index=bucket, settings=bucket_settings(layout), mappings=bucket_mappings())
    except ApiError as err:
        if err.status_code != 400 or "resource_already_exists_exception" not in str(err.body):
            raise
        return bucket  # created by a concurrent run a moment ago, and checked by it
    try:
        check_created(created, client, url, bucket)
        check_mapping_ownership(client, url, bucket)
    except ClusterRefusedError:
        client.indices.delete(index=bucket, expand_wildcards="all")  # empty: no bucket left half-made
        raise
    return bucket


def _flat_types(properties: dict, parent: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for name, spec in properties.items():
        dotted = f"{parent}{name}"
        if "properties" in spec:
            flat |= _flat_types(spec["properties"], f"{dotted}.")
        else:
            flat[dotted] = spec.get("type", "object")
    return flat


def check_mapping_ownership(client: Elasticsearch, url: str, index: str) -> None:
    """Raise ClusterRefusedError, naming the interfering template, if the created index does not hold
    the flow mapping and settings given in its create request (a site template can still add runtime
    fields that shadow ours, or pipelines and settings)."""
    mapping = client.indices.get_mapping(index=index, expand_wildcards="all")[index]["mappings"]
    settings = client.indices.get_settings(index=index, expand_wildcards="all", flat_settings=True)[index]["settings"]
    found = _flat_types(mapping.get("properties", {}))
    problems = [
        f"{field} is {found.get(field)}, not {kind}"
        for field, kind in ES_FIELD_TYPES.items()
        if found.get(field) != kind
    ]
    problems += [f"extra field {field}" for field in found if field not in ES_FIELD_TYPES]
    problems += [f"runtime field {name} shadows the indexed one" for name in mapping.get("runtime", {})]
    if str(mapping.get("dynamic")) != "strict":
        problems.append(f"dynamic is {mapping.get('dynamic')}, not strict")
    for name in ("index.default_pipeline", "index.final_pipeline"):
        if settings.get(name, "_none") != "_none":
            problems.append(f"{name} is {settings[name]}")
    if problems:
        raise ClusterRefusedError(
            f"index {index} at {url} does not hold the flow mapping it was created with ({'; '.join(problems)}): "
            f"{_templates_matching(client, index)} changes it. Exclude this project's indices from that template's "
            "index_patterns (or lower its priority below the project's create request), then re-materialize the hour"
        )


def _templates_matching(client: Elasticsearch, index: str) -> str:
    try:
        templates = client.indices.get_index_template()["index_templates"]
    except ApiError:
        return "an index template"
    matching = sorted(
        (t for t in templates if any(fnmatch.fnmatchcase(index, p) for p in t["index_template"]["index_patterns"])),
        key=lambda t: -t["index_template"].get("priority", 0),
    )
    if not matching:
        return "an index template or an ingest default"
    applied = matching[0]
    parts = applied["index_template"].get("composed_of", [])
    composed = f" (composed of {', '.join(parts)})" if parts else ""
    return f"index template {applied['name']!r}{composed}, priority {applied['index_template'].get('priority', 0)},"


def prepare_load(
    client: Elasticsearch, layout: IndexLayout, url: str, hour: Hour, run_id: str, now_ms: int
) -> LoadAttempt:
    """The run's load attempt of the hour: its bucket (created if needed) and its hidden write alias."""
    bucket = ensure_bucket(client, layout, url, hour)
    attempt = LoadAttempt(
        alias=layout.attempt_alias(hour, run_id),
        bucket=bucket,
        token=(token := f"{hour.label}-{run_id[:8]}-{now_ms}"),
        id_prefix=id_prefix_of(token),
    )
    # `add` replaces the alias if the plan step of this run runs again: its documents are rewritten
    # with the same ids and the new token, so none of the old token stays behind
    client.indices.update_aliases(
        actions=[
            {
                "add": {
                    "index": bucket,
                    "alias": attempt.alias,
                    "filter": {"term": {ATTEMPT_FIELD: attempt.token}},
                    "is_hidden": True,
                }
            }
        ]
    )
    return attempt


def count(client: Elasticsearch, index: str) -> int:
    return client.count(index=index)["count"]


@dataclass(frozen=True)
class IndexVerification:
    """What the attempt holds, against what the flow table says it must hold."""

    documents: int
    expected: int
    rows: int  # the table's rows; sequences must lie in [0, rows)
    min_sequence: int | None
    max_sequence: int | None

    @property
    def counts_match(self) -> bool:
        return self.documents == self.expected

    @property
    def no_duplicates(self) -> bool:
        """Exact, not sampled: ids are <prefix><event.sequence> and ES keeps _id unique, so the
        sequences of the attempt are distinct; with every one inside the table's row range and the
        count right, each row is there once and nothing else is."""
        if self.documents == 0:
            return True
        in_range = self.min_sequence is not None and self.min_sequence >= 0 and self.max_sequence < self.rows
        return in_range and self.documents <= self.rows

    @property
    def passed(self) -> bool:
        return self.counts_match and self.no_duplicates


def verify(client: Elasticsearch, attempt: LoadAttempt, expected_docs: int, rows: int) -> IndexVerification:
    """Count the attempt's documents and the range of their row numbers (the bucket is refreshed first)."""
    client.indices.refresh(index=attempt.bucket)
    stats = client.search(
        index=attempt.alias,
        size=0,
        track_total_hits=True,
        aggs={"first": {"min": {"field": "event.sequence"}}, "last": {"max": {"field": "event.sequence"}}},
    )
    return IndexVerification(
        documents=stats["hits"]["total"]["value"],
        expected=expected_docs,
        rows=rows,
        min_sequence=_int_or_none(stats["aggregations"]["first"]["value"]),
        max_sequence=_int_or_none(stats["aggregations"]["last"]["value"]),
    )


def _int_or_none(value: float | None) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class Publication:
    verification: IndexVerification
    replaced: tuple[tuple[str, str], ...]  # (bucket, token) of attempts whose documents are to be deleted
    removed_indices: tuple[str, ...]  # indices of the hourly layout deleted with the publication


def publish(
    client: Elasticsearch, layout: IndexLayout, hour: Hour, attempt: LoadAttempt, expected_docs: int, rows: int
) -> Publication:
    """Verify the attempt and, if it holds exactly the table's rows, make it the hour, in one `_aliases` call.

    Raises AttemptReplacedError if a later run of the hour already replaced this attempt. Returns
    the verification either way: the caller fails the run when it did not pass (nothing changed).
    """
    with publish_lock(client, layout.lock_index, holder=attempt.alias):
        if not client.indices.exists_alias(name=attempt.alias, expand_wildcards="all"):
            raise AttemptReplacedError(
                f"attempt {attempt.alias} of {hour.key} is gone: a later run of this hour published it and deleted "
                "this one. Nothing to do if that run succeeded; otherwise re-materialize the hour"
            )
        found = verify(client, attempt, expected_docs, rows)
        if not found.passed:
            return Publication(found, (), ())
        actions, replaced, removed = _publication_actions(client, layout, hour, attempt)
        client.indices.update_aliases(actions=actions)
    return Publication(found, tuple(replaced), tuple(removed))


def _alias_filter_token(definition: dict) -> str | None:
    term = definition.get("filter", {}).get("term", {}).get(ATTEMPT_FIELD)
    return term.get("value") if isinstance(term, dict) else term


def _publication_actions(
    client: Elasticsearch, layout: IndexLayout, hour: Hour, attempt: LoadAttempt
) -> tuple[list[dict], list[tuple[str, str]], list[str]]:
    hour_alias = layout.hour_alias(hour)
    actions: list[dict] = [{"add": {"index": attempt.bucket, "alias": hour_alias, "filter": _term(attempt.token)}}]
    replaced: list[tuple[str, str]] = []
    removed: list[str] = []

    # earlier attempts of the hour, wherever they are; later ones are loads still running, which
    # will replace this one in turn
    attempts = list(_attempt_aliases(client, layout, hour))
    for index, alias, token in attempts:
        if token != attempt.token and token_created_ms(token) < attempt.created_ms:
            actions.append({"remove": {"index": index, "alias": alias}})
            replaced.append((index, token))
    with_alias = {token for _, _, token in attempts}
    replaced += [(attempt.bucket, t) for t in _earlier_tokens_in(client, attempt, hour) if t not in with_alias]

    # the hour published elsewhere: an index of the hourly layout (deleted), or a bucket of another span
    for index in _indices_with_alias(client, hour_alias):
        if index == attempt.bucket:
            continue
        if layout.is_legacy_hour_index(index, hour):
            actions.append({"remove_index": {"index": index}})
            removed.append(index)
        else:
            old = _hour_aliases(client, layout, index).get(hour_alias)
            actions += _read_alias_actions(client, layout, index, drop=hour_alias, add=None)
            actions.append({"remove": {"index": index, "alias": hour_alias}})
            if old:
                replaced.append((index, old))
    # unpublished attempt indices of the hourly layout (failed loads before the upgrade)
    legacy = client.indices.get(index=layout.attempts_pattern(hour), expand_wildcards="all", ignore_unavailable=True)
    for index in legacy:
        if layout.is_legacy_hour_index(index, hour) and index not in removed:
            actions.append({"remove_index": {"index": index}})
            removed.append(index)

    actions += _read_alias_actions(client, layout, attempt.bucket, drop=hour_alias, add=(hour_alias, attempt.token))
    return actions, replaced, removed


def _term(token: str) -> dict:
    return {"term": {ATTEMPT_FIELD: token}}


def _attempt_aliases(client: Elasticsearch, layout: IndexLayout, hour: Hour) -> Iterator[tuple[str, str, str]]:
    """(index, attempt alias, token) of every attempt alias of the hour."""
    try:
        found = client.indices.get_alias(name=layout.attempts_pattern(hour), expand_wildcards="all")
    except NotFoundError:
        return
    for index, entry in found.items():
        for alias, definition in entry["aliases"].items():
            token = _alias_filter_token(definition)
            if token is not None:
                yield index, alias, token


def _earlier_tokens_in(client: Elasticsearch, attempt: LoadAttempt, hour: Hour) -> list[str]:
    """Attempts of the hour older than this one that have documents in its bucket: with their alias
    gone (a load cut short by a crash or by a publication), nothing selects them; they go too."""
    hour_range = {"gte": hour.start_ms, "lt": hour.start_ms + MS_PER_HOUR, "format": "epoch_millis"}
    response = client.search(
        index=attempt.bucket,
        size=0,
        query={"range": {"@timestamp": hour_range}},
        aggs={"attempts": {"terms": {"field": ATTEMPT_FIELD, "size": 1000}}},
    )
    tokens = [b["key"] for b in response["aggregations"]["attempts"]["buckets"]]
    return [t for t in tokens if t != attempt.token and token_created_ms(t) < attempt.created_ms]


def _indices_with_alias(client: Elasticsearch, alias: str) -> list[str]:
    try:
        return list(client.indices.get_alias(name=alias, expand_wildcards="all"))
    except NotFoundError:
        return []


def _hour_aliases(client: Elasticsearch, layout: IndexLayout, index: str) -> dict[str, str]:
    """hour alias -> published token, of the hours published in a bucket."""
    aliases = client.indices.get_alias(index=index, expand_wildcards="all")[index]["aliases"]
    hour_aliases = {}
    for name, definition in aliases.items():
        token = _alias_filter_token(definition)
        if token is not None and not definition.get("is_hidden") and name != layout.read_alias:
            hour_aliases[name] = token
    return hour_aliases


def _read_alias_actions(
    client: Elasticsearch, layout: IndexLayout, index: str, drop: str, add: tuple[str, str] | None
) -> list[dict]:
    """The read alias of a bucket, filtered to its published attempts after dropping/adding an hour."""
    published = _hour_aliases(client, layout, index)
    published.pop(drop, None)
    if add is not None:
        published[add[0]] = add[1]
    if not published:
        return [{"remove": {"index": index, "alias": layout.read_alias, "must_exist": False}}]
    tokens = sorted(published.values())
    return [{"add": {"index": index, "alias": layout.read_alias, "filter": {"terms": {ATTEMPT_FIELD: tokens}}}}]


def published_index(client: Elasticsearch, layout: IndexLayout, hour: Hour) -> str | None:
    """The index behind the hour's alias, if the hour was ever published."""
    indices = _indices_with_alias(client, layout.hour_alias(hour))
    return indices[0] if indices else None
