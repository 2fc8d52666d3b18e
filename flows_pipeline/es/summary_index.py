"""The hour's summary as documents of the summary index, which dashboards read.

Ids are hour/kind/key, so re-running an hour replaces its documents; those the new summary no
longer has are deleted in the same bulk request.
"""

from __future__ import annotations

import pyarrow as pa
from elasticsearch import Elasticsearch

from flows_pipeline.es.cluster_errors import ClusterRefusedError
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


def summary_index_name(prefix: str) -> str:
    return f"{prefix}-summary"


def index_summary(client: Elasticsearch, index: str, hour: Hour, summary: pa.Table) -> int:
    """Replace the hour's summary documents: ids are hour/kind/key, stale ones are deleted."""
    if not client.indices.exists(index=index):
        client.indices.create(index=index, mappings=_SUMMARY_MAPPING, settings={"number_of_shards": 1})
    docs = {f"{hour.key}/{row['kind']}/{row['key']}": row for row in summary.to_pylist()}
    existing = client.search(index=index, query={"term": {"hour": hour.key}}, size=10_000, _source=False)["hits"][
        "hits"
    ]
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
