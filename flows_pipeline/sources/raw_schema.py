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
        pa.field("tcp_flags", pa.int32()),
        pa.field("sampler_address", pa.string()),
        pa.field("sampling_rate", pa.int64()),
        pa.field("in_if", pa.int32()),
        pa.field("out_if", pa.int32()),
        # where the record was received: a quarantined row can always be found again
        pa.field("source_file", pa.string()),
        pa.field("source_row", pa.int64()),  # line (JSON lines, CSV) or record number (nfcapd), from 1
    ]
)

INT_FIELDS = (
    "time_flow_start_ns", "time_flow_end_ns", "src_port", "dst_port", "proto", "bytes", "packets",
    "tcp_flags", "sampling_rate", "in_if", "out_if",
)  # fmt: skip
ADDRESS_FIELDS = ("src_addr", "dst_addr", "sampler_address")

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
