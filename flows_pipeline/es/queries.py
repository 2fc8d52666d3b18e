"""Questions operators ask of the flow index, answered by Elasticsearch aggregations."""

from __future__ import annotations

from elasticsearch import Elasticsearch


def top_talkers(client: Elasticsearch, index: str, size: int = 5) -> list[tuple[str, int]]:
    """Source addresses that sent the most bytes, largest first: [(ip, bytes), ...]."""
    response = client.search(
        index=index,
        size=0,
        aggs={
            "talkers": {
                "terms": {"field": "source.ip", "size": size, "order": {"bytes": "desc"}},
                "aggs": {"bytes": {"sum": {"field": "network.bytes"}}},
            }
        },
    )
    return [(b["key"], int(b["bytes"]["value"])) for b in response["aggregations"]["talkers"]["buckets"]]
