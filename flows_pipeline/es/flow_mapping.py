"""The Elasticsearch mapping of the flow index: a type for every column of the flow table.

Dynamic mapping is off (`dynamic: strict`), so a stray field is an error, never a silently
guessed type. Types follow ECS (`ip`, `date`, `long`, `keyword` for identifiers).
"""

from __future__ import annotations

# The load attempt a document was written by (index_lifecycle.LoadAttempt.token): the hour alias
# and the read alias select documents of published attempts by it. Not ECS: the project's own.
ATTEMPT_FIELD = "flows.attempt"

ES_FIELD_TYPES: dict[str, str] = {
    # the row's number within the hour; also the end of its document _id (see bulk_encoding), which
    # is what makes "no duplicate documents" checkable: ES keeps _id unique, so sequences are too
    "event.sequence": "long",
    ATTEMPT_FIELD: "keyword",
    "@timestamp": "date",
    "event.end": "date",
    "event.duration": "long",
    "source.ip": "ip",
    "source.port": "long",
    "destination.ip": "ip",
    "destination.port": "long",
    "network.type": "keyword",
    "network.transport": "keyword",
    "network.iana_number": "keyword",
    "network.bytes": "long",
    "network.packets": "long",
    "source.bytes": "long",
    "source.packets": "long",
    "destination.bytes": "long",
    "destination.packets": "long",
    "netflow.tcp_control_bits": "integer",
    "observer.ip": "ip",
    "observer.ingress.interface.id": "keyword",
    "observer.egress.interface.id": "keyword",
    # Filebeat's netflow types for its names, ECS's for its own
    "netflow.icmp_type_ipv4": "short",
    "netflow.icmp_code_ipv4": "short",
    "netflow.icmp_type_ipv6": "short",
    "netflow.icmp_code_ipv6": "short",
    "netflow.sampling_interval": "long",
    "network.vlan.id": "keyword",
    "source.mac": "keyword",
    "destination.mac": "keyword",
    "network.community_id": "keyword",
}


def es_properties() -> dict:
    """Nested `properties` for the index mapping, built from the dotted field names."""
    properties: dict = {}
    for dotted, es_type in ES_FIELD_TYPES.items():
        node = properties
        *parents, leaf = dotted.split(".")
        for parent in parents:
            node = node.setdefault(parent, {"properties": {}})["properties"]
        node[leaf] = {"type": es_type}
    return properties
