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
        # ECS: what each side sent (scaled as above); network.* is their sum. destination.* is known
        # only from bidirectional records, null otherwise (a unidirectional flow is all the source's)
        pa.field("source.bytes", pa.int64(), nullable=False),
        pa.field("source.packets", pa.int64(), nullable=False),
        pa.field("destination.bytes", pa.int64()),
        pa.field("destination.packets", pa.int64()),
        pa.field("netflow.tcp_control_bits", pa.int16()),  # null for non-TCP
        pa.field("observer.ip", pa.string(), nullable=False),  # the exporter
        pa.field("observer.ingress.interface.id", pa.int32()),
        pa.field("observer.egress.interface.id", pa.int32()),
        # kept for security searches, null where the source does not give them (Filebeat's netflow names
        # where ECS has none): ICMP type and code by IP version, the exporter's sampling interval (1 in N
        # packets; counters above are already scaled by it), VLAN and MAC addresses (ECS: upper case, "-")
        pa.field("netflow.icmp_type_ipv4", pa.int16()),
        pa.field("netflow.icmp_code_ipv4", pa.int16()),
        pa.field("netflow.icmp_type_ipv6", pa.int16()),
        pa.field("netflow.icmp_code_ipv6", pa.int16()),
        pa.field("netflow.sampling_interval", pa.int64()),
        pa.field("network.vlan.id", pa.int32()),
        pa.field("source.mac", pa.string()),
        pa.field("destination.mac", pa.string()),
        # the Community ID flow hash (Zeek, Suricata, Filebeat): only when FLOWS_COMMUNITY_ID is on
        pa.field("network.community_id", pa.string()),
    ]
)
