"""Raw flow records for tests: one ordinary TCP flow of 2021-10-28 03:00, changed field by field."""

from __future__ import annotations

import pyarrow as pa

from flows_pipeline.hour import hour_of
from flows_pipeline.sources.raw_schema import RAW_FLOW_SCHEMA

HOUR = hour_of("2021-10-28-03:00")
T0 = HOUR.start_ns
S = 1_000_000_000


def raw_record(**overrides) -> dict:
    record = {
        "time_flow_start_ns": T0 + 5 * S,
        "time_flow_end_ns": T0 + 6_500_000_000,
        "src_addr": "10.0.0.1",
        "dst_addr": "192.0.2.7",
        "src_port": 40000,
        "dst_port": 443,
        "proto": 6,
        "bytes": 1500,
        "packets": 3,
        "tcp_flags": 0x1B,
        "sampler_address": "192.0.2.1",
        "sampling_rate": 1,
        "in_if": 1,
        "out_if": 2,
        "time_received_ns": T0 + 900 * S,
        "source_file": "test.jsonl",
        "source_row": None,
    }
    return {**record, **overrides}


def raw_batch(*records: dict) -> pa.RecordBatch:
    """The records as one raw batch, numbered from 100."""
    numbered = [{**record, "source_row": 100 + i} for i, record in enumerate(records)]
    return pa.RecordBatch.from_pylist(numbered, schema=RAW_FLOW_SCHEMA)
