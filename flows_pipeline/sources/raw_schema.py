"""Flows "as received": the raw record shape every source lands in `raw_flows`.

It follows GoFlow2's v2 JSON field names, a common collector format, so the synthetic
generator and real collectors share one raw shape and one normalizer. Timestamps are
nanoseconds since the epoch, as GoFlow2 writes them; counters are as exported (sampled).
"""

from __future__ import annotations

import pyarrow as pa

RAW_FLOW_SCHEMA = pa.schema(
    [
        pa.field("time_flow_start_ns", pa.int64()),
        pa.field("time_flow_end_ns", pa.int64()),
        pa.field("src_addr", pa.string()),
        pa.field("dst_addr", pa.string()),
        pa.field("src_port", pa.int32()),
        pa.field("dst_port", pa.int32()),
        pa.field("proto", pa.int32()),
        pa.field("bytes", pa.int64()),
        pa.field("packets", pa.int64()),
        # of those, what the destination sent back: bidirectional records only (nfdump's out_* beside
        # in_*); null for a unidirectional flow, whose counters are all the source's
        pa.field("reverse_bytes", pa.int64()),
        pa.field("reverse_packets", pa.int64()),
        pa.field("tcp_flags", pa.int32()),
        pa.field("sampler_address", pa.string()),
        pa.field("sampling_rate", pa.int64()),
        pa.field("in_if", pa.int32()),
        pa.field("out_if", pa.int32()),
        pa.field("time_received_ns", pa.int64()),  # when the collector received it (or wrote its file)
        pa.field("icmp_type", pa.int32()),  # ICMP/ICMPv6 only
        pa.field("icmp_code", pa.int32()),
        pa.field("vlan_id", pa.int32()),
        pa.field("src_mac", pa.string()),
        pa.field("dst_mac", pa.string()),
        # where the record was received: a quarantined row can always be found again
        pa.field("source_file", pa.string()),
        pa.field("source_row", pa.int64()),  # line (JSON lines, CSV) or record number (nfcapd), from 1
    ]
)

TIME_FIELDS = ("time_flow_start_ns", "time_flow_end_ns", "time_received_ns")  # epoch ns
INT_FIELDS = (
    "src_port", "dst_port", "proto", "bytes", "packets", "reverse_bytes", "reverse_packets", "tcp_flags",
    "sampling_rate", "in_if", "out_if", "icmp_type", "icmp_code", "vlan_id",
)  # fmt: skip
ADDRESS_FIELDS = ("src_addr", "dst_addr", "sampler_address")
MAC_FIELDS = ("src_mac", "dst_mac")

# A record that could not become a flow: why, where it came from, and the record itself. The same
# shape for records unreadable on arrival (raw_quarantine) and invalid as flows (flow_quarantine).
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("reason", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # file (or generator) the record came from
        pa.field("source_row", pa.int64(), nullable=False),  # record offset within that source
        pa.field("raw_record", pa.string(), nullable=False),  # the record as received, JSON
    ]
)
