import ipaddress

import orjson
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from flows_pipeline.hour import hour_of
from flows_pipeline.sources.raw_schema import RAW_FLOW_SCHEMA
from flows_pipeline.tables.normalizer import _valid_ip, normalize

HOUR = hour_of("2021-10-28-03:00")
T0 = HOUR.start_ms * 1_000_000


def raw(**overrides) -> dict:
    record = {
        "time_flow_start_ns": T0 + 5_000_000_000,
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
        "source_file": "test.jsonl",
        "source_row": None,
    }
    return {**record, **overrides}


def run(*records):
    numbered = [{**record, "source_row": 100 + i} for i, record in enumerate(records)]
    return normalize(pa.RecordBatch.from_pylist(numbered, schema=RAW_FLOW_SCHEMA), HOUR)


def test_valid_record_becomes_a_typed_ecs_flow():
    flow = run(raw()).flows.to_pylist()[0]
    assert flow["source.ip"] == "10.0.0.1"
    assert flow["network.transport"] == "tcp"
    assert flow["network.type"] == "ipv4"
    assert flow["event.duration"] == 1_500_000_000
    assert flow["@timestamp"].isoformat() == "2021-10-28T03:00:05+00:00"


def test_invalid_records_are_quarantined_with_their_reason_and_offset():
    result = run(
        raw(),
        raw(src_addr="10.0.0.300"),
        raw(dst_addr="not-an-ip"),
        raw(bytes=-1),
        raw(time_flow_end_ns=T0),
        raw(proto=None),
        raw(dst_port=70000),
    )
    rows = result.quarantine.to_pylist()
    assert result.flows.num_rows == 1
    assert [(r["reason"], r["source_row"]) for r in rows] == [
        ("invalid source ip", 101),
        ("invalid destination ip", 102),
        ("negative bytes", 103),
        ("end before start", 104),
        ("missing proto", 105),
        ("destination port outside 0-65535", 106),
    ]
    assert all(r["source"] == "test.jsonl" for r in rows)
    assert orjson.loads(rows[0]["raw_record"])["src_addr"] == "10.0.0.300"


def test_flows_of_other_hours_are_counted_not_quarantined():
    result = run(raw(), raw(time_flow_start_ns=T0 - 1_000_000, time_flow_end_ns=T0))
    assert (result.flows.num_rows, result.quarantine.num_rows, result.outside_hour) == (1, 0, 1)


def test_sampled_counters_are_scaled_and_portless_protocols_have_no_ports():
    flow = run(raw(sampling_rate=100, proto=1)).flows.to_pylist()[0]
    assert (flow["network.bytes"], flow["network.packets"]) == (150_000, 300)
    assert (flow["source.port"], flow["destination.port"], flow["netflow.tcp_control_bits"]) == (None, None, None)
    assert flow["network.transport"] == "icmp"


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return "%" not in text  # scoped addresses (fe80::1%eth0) are not flow endpoints


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet="0123456789abcdefABCDEF:.", max_size=41),
            st.ip_addresses(v=6).map(str),
            st.ip_addresses(v=6).map(lambda address: address.exploded),
            st.ip_addresses(v=4).map(lambda address: f"::ffff:{address}"),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_ip_validation_agrees_with_python_ipaddress(texts):
    assert _valid_ip(pa.array(texts)).to_pylist() == [_is_address(text) for text in texts]
