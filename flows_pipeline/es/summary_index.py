"""The hour's summary as documents of the summary index, which dashboards read.

The summary follows the hour: it is written only when it agrees with the hour's published flows
(its totals against Elasticsearch's own aggregation through the hour alias), so no summary stands
for an hour whose index does not exist or holds other totals. Ids are hour/kind/key, so
re-running an hour replaces its documents; those the new summary no longer has are deleted in
the same bulk request. The index (`summary-<prefix>`) lies outside the flow indices' names.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import astuple, dataclass

import pyarrow as pa
from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan

from flows_pipeline.es.cluster_errors import ClusterRefusedError
from flows_pipeline.exporter_health import SummaryHistory
from flows_pipeline.hour import Hour
from flows_pipeline.tables.summary import COUNTERS

_SUMMARY_MAPPING = {
    "dynamic": "strict",
    "properties": {
        "@timestamp": {"type": "date"},
        "hour": {"type": "keyword"},
        "kind": {"type": "keyword"},
        "key": {"type": "keyword"},
        "rank": {"type": "integer"},
        **{counter: {"type": "long"} for counter in COUNTERS},
    },
}


# Elasticsearch sums `long` fields in doubles: exact below 2^53, within a double's rounding above
_EXACT_BELOW = 2**53


@dataclass(frozen=True)
class Totals:
    flows: int
    bytes: int
    packets: int

    def agrees_with(self, other: Totals) -> bool:
        return all(_same(a, b) for a, b in zip(astuple(self), astuple(other), strict=True))


def _same(a: int, b: int) -> bool:
    return a == b if max(a, b) < _EXACT_BELOW else abs(a - b) <= max(a, b) * 2**-52


def summary_totals(summary: pa.Table) -> Totals:
    """The hour's totals from its summary (the per-transport rows add up to the whole hour)."""
    rows = [r for r in summary.to_pylist() if r["kind"] == "transport"]
    return Totals(*(sum(r[c] for r in rows) for c in COUNTERS))


def index_totals(client: Elasticsearch, hour_alias: str) -> Totals | None:
    """The same totals as Elasticsearch counts them through the hour alias; None if the hour is not published."""
    if not client.indices.exists_alias(name=hour_alias):
        return None
    response = client.search(
        index=hour_alias,
        size=0,
        track_total_hits=True,
        aggs={"bytes": {"sum": {"field": "network.bytes"}}, "packets": {"sum": {"field": "network.packets"}}},
    )
    aggs = response["aggregations"]
    return Totals(response["hits"]["total"]["value"], int(aggs["bytes"]["value"]), int(aggs["packets"]["value"]))


def ensure_summary_index(client: Elasticsearch, index: str, replicas: int) -> None:
    if not client.indices.exists(index=index):
        client.options(ignore_status=400).indices.create(
            index=index,
            mappings=_SUMMARY_MAPPING,
            settings={"number_of_shards": 1, "number_of_replicas": replicas, "default_pipeline": "_none"},
        )


def index_summary(client: Elasticsearch, index: str, hour: Hour, summary: pa.Table) -> int:
    """Replace the hour's summary documents: ids are hour/kind/key, stale ones are deleted."""
    docs = {f"{hour.key}/{row['kind']}/{row['key']}": row for row in summary.to_pylist()}
    # every earlier document of the hour, however many exporters it had (a search stops at 10,000 hits)
    existing = scan(client, index=index, query={"query": {"term": {"hour": hour.key}}, "_source": False})
    operations: list[dict] = [{"delete": {"_id": hit["_id"]}} for hit in existing if hit["_id"] not in docs]
    for doc_id, row in docs.items():
        operations += [{"index": {"_id": doc_id}}, {"@timestamp": hour.start.isoformat(), **row}]
    if operations:
        response = client.bulk(index=index, operations=operations, refresh="wait_for")
        if response["errors"]:
            failed = [next(iter(item.values())) for item in response["items"]]
            reasons = [f"{f['error'].get('type')}: {f['error'].get('reason')}" for f in failed if f.get("error")]
            raise ClusterRefusedError(
                f"summary of {hour.key} not indexed into {index}: Elasticsearch rejected {len(reasons)} documents; "
                f"first reasons: {reasons[:3]}. Check the index's mapping, then re-materialize flow_summary"
            )
    return len(docs)


def summary_history(client: Elasticsearch, index: str, hours: Sequence[Hour]) -> SummaryHistory:
    """What the summary index holds of `hours`: flows per exporter and flows in all, by hour key.

    Read with the scroll helper, so an hour of thousands of exporters is read whole; hours without
    a summary (never loaded, or deleted by retention) are simply absent. An index that does not
    exist yet is no history at all.
    """
    exporters: dict[str, dict[str, int]] = defaultdict(dict)
    flows: dict[str, int] = defaultdict(int)
    if not hours or not client.indices.exists(index=index):
        return SummaryHistory(exporters={}, flows={})
    query = {
        "bool": {
            "filter": [
                {"terms": {"hour": [hour.key for hour in hours]}},
                {"terms": {"kind": ["exporter", "transport"]}},
            ]
        }
    }
    for hit in scan(client, index=index, query={"query": query, "_source": ["hour", "kind", "key", "flows"]}):
        row = hit["_source"]
        if row["kind"] == "exporter":
            exporters[row["hour"]][row["key"]] = row["flows"]
        else:  # the transport rows add up to the hour's flows
            flows[row["hour"]] += row["flows"]
    return SummaryHistory(exporters=dict(exporters), flows=dict(flows))
