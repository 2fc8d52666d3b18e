import ipaddress

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows_pipeline.tables.normalizer import (
    DEFAULT_OPTIONS,
    INT64_MAX,
    LEADING_ZEROS,
    MAX_SAMPLING_RATE,
    NOT_AN_ADDRESS,
    NormalizeOptions,
    canonical_address,
    canonical_addresses,
    normalize,
)
from flows_pipeline_tests.raw_records import HOUR, T0, S, raw_batch
from flows_pipeline_tests.raw_records import raw_record as raw


def run(*records, options=DEFAULT_OPTIONS):
    return normalize(raw_batch(*records), HOUR, options)


def reasons(result) -> list[str]:
    return result.quarantine.column("reason").to_pylist()


def test_valid_record_becomes_a_typed_ecs_flow():
    flow = run(raw()).flows.to_pylist()[0]
    assert flow["source.ip"] == "10.0.0.1"
    assert flow["network.transport"] == "tcp"
    assert flow["network.type"] == "ipv4"
    assert flow["event.duration"] == 1_500_000_000
    assert flow["@timestamp"].isoformat() == "2021-10-28T03:00:05+00:00"
    assert flow["netflow.sampling_interval"] == 1
    assert flow["network.community_id"] is None  # an option, off by default


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
        ("src_addr: not an IP address", 101),
        ("dst_addr: not an IP address", 102),
        ("bytes: negative", 103),
        ("time_flow_end_ns: before time_flow_start_ns", 104),
        ("proto: missing", 105),
        ("dst_port: outside 0-65535", 106),
    ]
    assert all(r["source"] == "test.jsonl" for r in rows)
    assert orjson.loads(rows[0]["raw_record"])["src_addr"] == "10.0.0.300"


def test_flows_of_other_hours_are_counted_not_quarantined():
    result = run(raw(), raw(time_flow_start_ns=T0 - 1_000_000, time_flow_end_ns=T0))
    assert (result.flows.num_rows, result.quarantine.num_rows, result.outside_hour) == (1, 0, 1)


# --- time: impossible values are quarantined naming the field, never counted as "another hour"


@pytest.mark.parametrize(
    ("start", "end", "reason"),
    [
        (0, 0, "time_flow_start_ns: 0 (the exporter sent no time)"),
        (T0 // S, T0 // S + 1, "time_flow_start_ns: looks like seconds, not nanoseconds"),
        (T0 // 10**6, T0 // 10**6, "time_flow_start_ns: looks like milliseconds, not nanoseconds"),
        (T0 // 1000, T0 // 1000, "time_flow_start_ns: looks like microseconds, not nanoseconds"),
        (T0 - 400 * 24 * 3600 * S, T0, "time_flow_start_ns: before the first partition (2021-10-28-00:00)"),
        (T0 + 5 * S, 0, "time_flow_end_ns: 0 (the exporter sent no time)"),
        (T0 + 2000 * S, T0 + 2000 * S, "time_flow_start_ns: after the record arrived"),
        (T0 + 5 * S, T0 + 2000 * S, "time_flow_end_ns: after the record arrived"),
        (T0 + 5 * S, T0 + S, "time_flow_end_ns: before time_flow_start_ns"),
        (4_200_000_000 * S, 4_200_000_000 * S, "time_flow_start_ns: after 2100-01-01"),
    ],
)
def test_impossible_times_are_quarantined_naming_the_field_and_the_suspected_problem(start, end, reason):
    result = run(raw(time_flow_start_ns=start, time_flow_end_ns=end))
    assert result.outside_hour == 0 and result.flows.num_rows == 0
    assert reasons(result)[0].startswith(reason)


def test_the_suspected_unit_is_named_against_the_configured_one():
    in_ms = NormalizeOptions(time_unit="ms")
    written_in_seconds = (T0 // S + 5) * 10**6  # what reading seconds as milliseconds gives, in ns
    result = run(raw(time_flow_start_ns=written_in_seconds, time_flow_end_ns=written_in_seconds), options=in_ms)
    assert reasons(result)[0].startswith("time_flow_start_ns: looks like seconds, not milliseconds")
    assert "FLOWS_SOURCE_TIME_UNIT=s" in reasons(result)[0]
    assert run(raw(), options=in_ms).flows.num_rows == 1  # times are ns once read, whatever the unit


def test_clock_skew_of_a_few_minutes_is_tolerated_and_no_receive_time_means_no_check():
    result = run(raw(time_flow_start_ns=T0 + 5 * S, time_flow_end_ns=T0 + 100 * S, time_received_ns=T0 + 10 * S))
    assert result.flows.num_rows == 1
    late = raw(time_received_ns=None, time_flow_start_ns=T0 + 3000 * S, time_flow_end_ns=T0 + 3001 * S)
    assert run(late).flows.num_rows == 1


# --- addresses: one canonical form


@pytest.mark.parametrize(
    ("text", "outcome"),
    [
        ("::ffff:192.0.2.10", ("192.0.2.10", None)),
        ("::FFFF:C000:020A", ("192.0.2.10", None)),
        ("0:0:0:0:0:ffff:192.0.2.10", ("192.0.2.10", None)),
        ("::1", ("::1", None)),
        ("::192.0.2.10", ("::c000:20a", None)),  # IPv4-compatible (deprecated) stays IPv6
        ("2001:DB8:0:0:0:0:0:1", ("2001:db8::1", None)),
        ("fe80::1%eth0", ("fe80::1", None)),
        (" 10.0.0.1 ", ("10.0.0.1", None)),
        ("192.0.2.1", ("192.0.2.1", None)),
        ("010.0.0.1", (None, LEADING_ZEROS)),
        ("10.0.0.01", (None, LEADING_ZEROS)),
        ("10.0.0.1%eth0", (None, NOT_AN_ADDRESS)),
        ("fe80::1%", (None, NOT_AN_ADDRESS)),
        ("fe80::1%a b", (None, NOT_AN_ADDRESS)),
        ("1.2.3", (None, NOT_AN_ADDRESS)),
        ("::ffff:999.0.0.1", (None, NOT_AN_ADDRESS)),
    ],
)
def test_every_textual_form_has_one_canonical_form_or_a_stated_problem(text, outcome):
    assert canonical_address(text) == outcome


def test_ipv4_mapped_flows_are_ipv4_flows():
    result = run(
        raw(src_addr="::ffff:192.0.2.10", dst_addr="::ffff:198.51.100.20"),
        raw(src_addr="::ffff:192.0.2.10", dst_addr="198.51.100.20", sampler_address="::FFFF:192.0.2.1"),
        raw(src_addr="010.0.0.1"),
    )
    flows = result.flows.to_pylist()
    assert [(f["source.ip"], f["destination.ip"], f["network.type"]) for f in flows] == [
        ("192.0.2.10", "198.51.100.20", "ipv4"),
        ("192.0.2.10", "198.51.100.20", "ipv4"),
    ]
    assert flows[1]["observer.ip"] == "192.0.2.1"
    assert reasons(result) == ["src_addr: IPv4 with leading zeros (ambiguous: octal or decimal?)"]
    # the quarantine keeps the record as received
    assert orjson.loads(result.quarantine.column("raw_record")[0].as_py())["src_addr"] == "010.0.0.1"


# --- counters: nothing wraps, goes negative, or is implausibly scaled


def test_sampled_counters_are_scaled_and_portless_protocols_have_no_ports():
    flow = run(raw(sampling_rate=100, proto=1, dst_port=None)).flows.to_pylist()[0]
    assert (flow["network.bytes"], flow["network.packets"]) == (150_000, 300)
    assert (flow["source.port"], flow["destination.port"], flow["netflow.tcp_control_bits"]) == (None, None, None)
    assert flow["network.transport"] == "icmp"
    assert flow["netflow.sampling_interval"] == 100


def test_each_side_sends_its_own_counters_and_network_counts_both():
    flows = run(raw(sampling_rate=2), raw(bytes=1500, packets=3, reverse_bytes=400, reverse_packets=1, sampling_rate=2))
    sides = [
        {k: f[k] for k in ("network.bytes", "source.bytes", "destination.bytes", "network.packets", "source.packets",
                           "destination.packets")}
        for f in flows.flows.to_pylist()
    ]  # fmt: skip
    assert sides == [
        # unidirectional: every byte is the source's; what the destination sent is not in this record
        {"network.bytes": 3000, "source.bytes": 3000, "destination.bytes": None,
         "network.packets": 6, "source.packets": 6, "destination.packets": None},
        {"network.bytes": 3000, "source.bytes": 2200, "destination.bytes": 800,
         "network.packets": 6, "source.packets": 4, "destination.packets": 2},
    ]  # fmt: skip
    bad = run(raw(bytes=100, reverse_bytes=101, reverse_packets=1), raw(reverse_bytes=-1, reverse_packets=0))
    assert reasons(bad) == ["reverse_bytes: more than bytes (the flow's both directions)", "reverse_bytes: negative"]


def test_counters_that_would_overflow_when_scaled_are_quarantined_and_the_rest_kept():
    result = run(
        raw(bytes=2**62, sampling_rate=4),
        raw(bytes=2**61, packets=INT64_MAX // 3 + 1, sampling_rate=3),
        raw(bytes=INT64_MAX // 2, sampling_rate=2),
        raw(bytes=INT64_MAX, sampling_rate=0),
        raw(),
    )
    assert reasons(result) == [
        "bytes: times sampling_rate exceeds 2^63-1",
        "packets: times sampling_rate exceeds 2^63-1",
    ]
    assert result.flows.column("network.bytes").to_pylist() == [INT64_MAX // 2 * 2, INT64_MAX, 1500]


def test_implausible_sampling_rates_have_a_rule_and_0_and_1_mean_unsampled():
    result = run(raw(sampling_rate=-1), raw(sampling_rate=MAX_SAMPLING_RATE + 1), raw(sampling_rate=0), raw())
    assert reasons(result) == ["sampling_rate: negative", "sampling_rate: above 1,000,000 (implausible)"]
    assert result.flows.column("network.bytes").to_pylist() == [1500, 1500]
    assert result.flows.column("netflow.sampling_interval").to_pylist() == [1, 1]
    assert run(raw(sampling_rate=None)).flows.column("netflow.sampling_interval").to_pylist() == [None]


def test_tcp_flags_beyond_the_header_bits_are_quarantined_not_a_crash():
    assert (
        reasons(run(raw(tcp_flags=70000), raw(tcp_flags=256)))
        == ["tcp_flags: outside 0-255 (the TCP header's 8 flag bits)"] * 2
    )


# --- what security teams search for


def test_icmp_type_and_code_as_exported_or_from_the_netflow_port_encoding():
    result = run(
        raw(proto=1, src_port=0, dst_port=3 << 8 | 3),
        raw(proto=1, dst_port=None, icmp_type=8, icmp_code=0),
        raw(proto=58, src_addr="2001:db8::1", dst_addr="2001:db8::2", dst_port=128 << 8),
        raw(proto=1, icmp_type=300),
    )
    flows = result.flows.to_pylist()
    fields = ["netflow.icmp_type_ipv4", "netflow.icmp_code_ipv4", "netflow.icmp_type_ipv6", "netflow.icmp_code_ipv6"]
    assert [[f[name] for name in fields] for f in flows] == [
        [3, 3, None, None],
        [8, 0, None, None],
        [None, None, 128, 0],
    ]
    assert reasons(result) == ["icmp_type: outside 0-255"]
    assert run(raw()).flows.column("netflow.icmp_type_ipv4").to_pylist() == [None]  # TCP has none


def test_vlan_and_mac_addresses_in_ecs_form():
    result = run(
        raw(vlan_id=120, src_mac="00:1b:21:3a:4f:5e", dst_mac="0050.56c0.0001"),
        raw(vlan_id=0, src_mac="00-00-00-00-00-00", dst_mac="a0b1c2d3e4f5"),
        raw(vlan_id=5000),
        raw(src_mac="00:1b:21:3a:4f"),
    )
    flows = result.flows.to_pylist()
    assert [(f["network.vlan.id"], f["source.mac"], f["destination.mac"]) for f in flows] == [
        (120, "00-1B-21-3A-4F-5E", "00-50-56-C0-00-01"),
        (None, None, "A0-B1-C2-D3-E4-F5"),
    ]
    assert reasons(result) == ["vlan_id: outside 0-4095", "src_mac: not a MAC address"]


def test_community_id_when_enabled_is_computed_on_canonical_addresses():
    on = NormalizeOptions(community_id=True)
    # the specification's first example (community-id-spec README), written as an IPv4-mapped pair
    flows = run(
        raw(src_addr="::ffff:128.232.110.120", dst_addr="66.35.250.204", src_port=34855, dst_port=80), options=on
    ).flows
    assert flows.column("network.community_id").to_pylist() == ["1:LQU9qZlK+B5F3KDmev6m5PMibrg="]


# --- properties


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet="0123456789abcdefABCDEF:.", max_size=41),
            st.ip_addresses(v=6).map(str),
            st.ip_addresses(v=6).map(lambda address: address.exploded.upper()),
            st.ip_addresses(v=4).map(lambda address: f"::ffff:{address}"),
            st.ip_addresses(v=4).map(str),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_canonical_addresses_agree_with_python_ipaddress(texts):
    canonical, problem = canonical_addresses(pa.array(texts))
    for text, form, wrong in zip(texts, canonical.to_pylist(), problem.to_pylist(), strict=True):
        assert (wrong is None) == _is_address(text)
        if wrong is None:
            parsed = ipaddress.ip_address(text)
            expected = parsed.ipv4_mapped if parsed.version == 6 and parsed.ipv4_mapped else parsed
            assert form == str(expected)
