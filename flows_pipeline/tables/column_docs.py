"""What each column of the tables means, for readers of the tables and of the Dagster UI (ECS names).

Units are in the text: ECS durations are nanoseconds, counters are estimates of the real traffic
(sampled counts times the sampling rate).
"""

from __future__ import annotations

FLOW_COLUMNS: dict[str, str] = {
    "@timestamp": "Flow start (first seen), UTC, milliseconds.",
    "event.end": "Flow end (last seen), UTC, milliseconds.",
    "event.duration": "Flow duration in nanoseconds (ECS).",
    "source.ip": "Source address, canonical text (IPv4-mapped IPv6 as the IPv4 host).",
    "source.port": "Source port; null for protocols without ports (ICMP, GRE, ESP...).",
    "destination.ip": "Destination address.",
    "destination.port": "Destination port; null for protocols without ports.",
    "network.type": "ipv4 or ipv6.",
    "network.transport": "IANA protocol keyword in lower case (tcp, udp, icmp...), or its number.",
    "network.iana_number": "IANA protocol number.",
    "network.bytes": "Bytes of the flow, scaled by the sampling rate.",
    "network.packets": "Packets of the flow, scaled by the sampling rate.",
    "source.bytes": "Bytes the source sent to the destination (scaled); all of network.bytes for a one-way flow.",
    "source.packets": "Packets the source sent to the destination (scaled).",
    "destination.bytes": "Bytes the destination sent back (scaled): bidirectional records only, else null.",
    "destination.packets": "Packets the destination sent back (scaled): bidirectional records only, else null.",
    "netflow.tcp_control_bits": "OR of the TCP flags seen (Filebeat's name); null for non-TCP.",
    "observer.ip": "The exporter (router, probe) that reported the flow.",
    "observer.ingress.interface.id": "Input interface index (SNMP ifIndex) on the exporter.",
    "observer.egress.interface.id": "Output interface index (SNMP ifIndex) on the exporter.",
    "netflow.icmp_type_ipv4": "ICMP type of an IPv4 ICMP flow (Filebeat's netflow name); null otherwise.",
    "netflow.icmp_code_ipv4": "ICMP code of an IPv4 ICMP flow; null otherwise.",
    "netflow.icmp_type_ipv6": "ICMPv6 type of an IPv6 ICMP flow; null otherwise.",
    "netflow.icmp_code_ipv6": "ICMPv6 code of an IPv6 ICMP flow; null otherwise.",
    "netflow.sampling_interval": "The exporter's sampling interval (1 in N packets); 1 when unsampled.",
    "network.vlan.id": "VLAN id, where the source gives it.",
    "source.mac": "Source MAC address, where the source gives it.",
    "destination.mac": "Destination MAC address, where the source gives it.",
    "network.community_id": "Community ID flow hash (v1, seed 0), when FLOWS_COMMUNITY_ID=true; else null.",
}

RAW_COLUMNS: dict[str, str] = {
    "time_flow_start_ns": "Flow start as received, nanoseconds since the epoch (GoFlow2 v2 name).",
    "time_flow_end_ns": "Flow end as received, nanoseconds since the epoch.",
    "src_addr": "Source address as received.",
    "dst_addr": "Destination address as received.",
    "bytes": "Bytes as exported (sampled).",
    "packets": "Packets as exported (sampled).",
    "reverse_bytes": "Of bytes, those the destination sent back: bidirectional records only (nfdump's out_bytes).",
    "reverse_packets": "Of packets, those the destination sent back: bidirectional records only.",
    "sampling_rate": "1 in N packets sampled by the exporter; 0 or 1: unsampled.",
    "sampler_address": "The exporter's address.",
    "source_file": "The file (or generator) the record came from.",
    "source_row": "Line (JSON lines, CSV) or record number (nfcapd) in that file, from 1.",
}

QUARANTINE_COLUMNS: dict[str, str] = {
    "reason": "Why the record is not a flow of the table: the first rule it breaks, naming the field.",
    "source": "The file (or generator) the record came from.",
    "source_row": "Line or record number in that file, from 1.",
    "raw_record": "The record as received (JSON), to find and fix it.",
}
