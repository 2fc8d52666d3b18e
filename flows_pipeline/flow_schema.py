"""The one flow schema every source is normalized to, with ECS-style field names.

Column names are the dotted Elastic Common Schema names, so a row of the flow table is
already a document: the bulk encoder writes them as dotted keys and Elasticsearch expands
them into objects (`source.ip` -> {"source": {"ip": ...}}). Fields that ECS does not have
follow Filebeat's netflow module (`netflow.tcp_control_bits`).
"""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("ms", tz="UTC")

FLOW_TABLE_SCHEMA = pa.schema(
    [
        pa.field("@timestamp", TIMESTAMP, nullable=False),  # flow start (first seen)
        pa.field("event.end", TIMESTAMP, nullable=False),  # flow end (last seen)
        pa.field("event.duration", pa.int64(), nullable=False),  # nanoseconds, as ECS says
        pa.field("source.ip", pa.string(), nullable=False),
        pa.field("source.port", pa.int32()),  # null for ICMP and other portless protocols
        pa.field("destination.ip", pa.string(), nullable=False),
        pa.field("destination.port", pa.int32()),
        pa.field("network.type", pa.string(), nullable=False),  # ipv4 | ipv6
        pa.field("network.transport", pa.string(), nullable=False),  # tcp | udp | icmp | ...
        pa.field("network.iana_number", pa.int16(), nullable=False),
        pa.field("network.bytes", pa.int64(), nullable=False),
        pa.field("network.packets", pa.int64(), nullable=False),
        pa.field("netflow.tcp_control_bits", pa.int16()),  # null for non-TCP
        pa.field("observer.ip", pa.string(), nullable=False),  # the exporter
        pa.field("observer.ingress.interface.id", pa.int32()),
        pa.field("observer.egress.interface.id", pa.int32()),
    ]
)

FLOW_FIELDS = tuple(FLOW_TABLE_SCHEMA.names)

# Elasticsearch types for the same fields; the index template is built from this, with
# dynamic mapping off so a stray field is an error, never a silently guessed type.
ES_FIELD_TYPES: dict[str, str] = {
    # the row's number within the hour; also its document _id (see bulk_encoding), which is what
    # makes "no duplicate documents" checkable: ES keeps _id unique, so sequences are unique too
    "event.sequence": "long",
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
    "netflow.tcp_control_bits": "integer",
    "observer.ip": "ip",
    "observer.ingress.interface.id": "keyword",
    "observer.egress.interface.id": "keyword",
}

IANA_TRANSPORT_NAMES: dict[int, str] = {
    1: "icmp",
    2: "igmp",
    6: "tcp",
    17: "udp",
    47: "gre",
    50: "esp",
    58: "ipv6-icmp",
    132: "sctp",
}
PORTED_PROTOCOLS = frozenset({6, 17, 132})


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
