"""The life of an hour's index: template, attempt index, verification, atomic publication.

Every load goes into a fresh *attempt* index (`flows-2021.10.28-03-<run>`), hidden and tuned for
bulk loading (no refresh, no replicas). Searches use aliases only: the hour's alias
(`flows-2021.10.28-03`) and the read alias over all hours (`flows`). When the attempt holds
exactly the table's rows, one `_aliases` call moves both aliases to it and deletes the previous
attempt, so a search sees the old hour or the new one, never half of one, and a re-run never
leaves duplicates or leftovers behind. A failed attempt stays hidden and unaliased; the next
successful load of that hour deletes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from elasticsearch import Elasticsearch, NotFoundError

from flows_pipeline.errors import TerminalError
from flows_pipeline.es.flow_mapping import es_properties
from flows_pipeline.hour import Hour


class IndexVerificationError(TerminalError):
    """The attempt index does not hold exactly the table's rows; the hour is not published."""


@dataclass(frozen=True)
class IndexLayout:
    """Names and shape of the flow indices; defaults in resources.py."""

    prefix: str  # the read alias; hour aliases and indices are named <prefix>-...
    shards: int  # primary shards per index
    replicas: int  # after the load; during it there are none

    @property
    def read_alias(self) -> str:
        return self.prefix

    @property
    def template_name(self) -> str:
        return f"{self.prefix}-hourly"

    def hour_alias(self, hour: Hour) -> str:
        return f"{self.prefix}-{hour.label}"

    def attempt_index(self, hour: Hour, run_id: str) -> str:
        return f"{self.hour_alias(hour)}-{run_id[:8]}"

    def attempts_pattern(self, hour: Hour) -> str:
        return f"{self.hour_alias(hour)}-*"


def ensure_template(client: Elasticsearch, layout: IndexLayout) -> None:
    """Explicit mappings for every flow field; `dynamic: strict` makes a stray field an error."""
    client.indices.put_index_template(
        name=layout.template_name,
        index_patterns=[f"{layout.prefix}-*"],
        priority=100,
        template={
            "settings": {"number_of_shards": layout.shards},
            "mappings": {"dynamic": "strict", "_source": {"enabled": True}, "properties": es_properties()},
        },
    )


def create_attempt_index(client: Elasticsearch, layout: IndexLayout, hour: Hour, run_id: str) -> str:
    """A fresh, hidden index for this run's load of the hour (replaced if the plan step re-runs)."""
    index = layout.attempt_index(hour, run_id)
    ensure_template(client, layout)
    client.indices.delete(index=index, ignore_unavailable=True)
    client.indices.create(
        index=index,
        settings={"index": {"hidden": True, "refresh_interval": "-1", "number_of_replicas": 0}},
    )
    return index


def count(client: Elasticsearch, index: str) -> int:
    return client.count(index=index)["count"]


@dataclass(frozen=True)
class IndexVerification:
    """What the attempt index holds, against what the flow table says it must hold."""

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
        """Exact, not sampled: _id == event.sequence and ES keeps _id unique, so the sequences are
        distinct; with every sequence inside the table's row range and the count right, each row
        is there once and nothing else is."""
        if self.documents == 0:
            return True
        in_range = self.min_sequence is not None and self.min_sequence >= 0 and self.max_sequence < self.rows
        return in_range and self.documents <= self.rows


def make_searchable(client: Elasticsearch, layout: IndexLayout, index: str) -> None:
    """End the bulk-load settings (refresh restored, replicas added) and refresh once."""
    client.indices.put_settings(
        index=index,
        settings={"index": {"refresh_interval": None, "number_of_replicas": layout.replicas}},
    )
    client.indices.refresh(index=index)
    if layout.replicas:
        client.cluster.health(index=index, wait_for_active_shards=str(layout.replicas + 1), timeout="120s")


def verify(client: Elasticsearch, index: str, expected_docs: int, rows: int) -> IndexVerification:
    stats = client.search(
        index=index,
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


def swap_aliases(client: Elasticsearch, layout: IndexLayout, hour: Hour, index: str) -> list[str]:
    """Atomically point the hour's alias and the read alias at `index`, deleting earlier attempts."""
    # Earlier attempts only: a later run of the same hour, still loading, keeps its index and
    # will replace this one when it publishes in turn.
    settings = client.indices.get_settings(
        index=layout.attempts_pattern(hour), name="index.creation_date", expand_wildcards="all"
    )
    created = {name: int(found["settings"]["index"]["creation_date"]) for name, found in settings.items()}
    replaced = sorted(name for name, when in created.items() if when < created[index])
    actions: list[dict] = [
        {"add": {"index": index, "alias": layout.hour_alias(hour)}},
        {"add": {"index": index, "alias": layout.read_alias}},
    ]
    actions += [{"remove_index": {"index": name}} for name in replaced]
    client.indices.update_aliases(actions=actions)
    client.indices.put_settings(index=index, settings={"index": {"hidden": False}})
    return replaced


def published_index(client: Elasticsearch, layout: IndexLayout, hour: Hour) -> str | None:
    """The index the hour's alias points at, if the hour was ever published."""
    try:
        return next(iter(client.indices.get_alias(name=layout.hour_alias(hour))))
    except NotFoundError:
        return None
