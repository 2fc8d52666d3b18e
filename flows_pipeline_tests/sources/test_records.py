"""Hostile input: every record read gives exactly one outcome, a usable row or a stated reason."""

import ipaddress
import json
import re
import string

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows_pipeline.hour import hour_of
from flows_pipeline.sources.raw_schema import RAW_FLOW_SCHEMA
from flows_pipeline.sources.records import MAX_LINE_BYTES, csv_records, goflow2_records
from flows_pipeline.sources.time_units import CLOCK_SKEW_NS, FIRST_PLAUSIBLE_NS, LAST_PLAUSIBLE_NS
from flows_pipeline.tables.normalizer import INT64_MAX, MAX_SAMPLING_RATE, normalize

HOUR = hour_of("2021-10-28-03:00")
T0 = HOUR.start_ms * 1_000_000
S = 1_000_000_000
FIELDS = [f.name for f in RAW_FLOW_SCHEMA if f.name not in ("source_file", "source_row")]

hostile_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=60),
    st.sampled_from(["10.0.0.1", "2001:db8::1", "256.1.1.1", "::ffff:1.2.3.4", "1.2.3", "TCP", "udp", "-1", "1e9"]),
    st.lists(st.integers(), max_size=3),
)
# a time in every form collectors write, right or wrong for the nanoseconds GoFlow2 promises
times = st.one_of(
    st.integers(T0 - 10**12, T0 + 4 * 10**12),
    st.integers(T0 // S - 10, T0 // S + 4000),  # seconds
    st.integers(T0 // 10**6, T0 // 10**6 + 4 * 10**6),  # milliseconds
    st.integers(T0 // 1000, T0 // 1000 + 4 * 10**9),  # microseconds
    st.just(0),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from(["2021-10-28T03:00:10Z", "2021-10-28T05:00:10+02:00", "2021-10-28T03:00:10", "1.63539E+18"]),
)
addresses = st.one_of(
    st.sampled_from(["10.0.0.1", "::ffff:10.0.0.1", "::FFFF:A00:1", "010.0.0.1", "fe80::1%eth0", "::1", "999.0.0.1"]),
    st.sampled_from(["2001:DB8::7", "", "1.1.1.1 ", "not-an-ip", "10.0.0.1%eth0"]),
    st.ip_addresses().map(str),
)
PLAUSIBLE = ("time_flow_start_ns", "time_flow_end_ns", "src_addr", "dst_addr", "proto", "bytes", "packets")
ODD_BUT_KNOWN = {
    "sampling_rate": st.one_of(st.sampled_from([0, 1, 2, 100, -1, 10**6, 10**6 + 1]), st.integers(0, 2**40)),
    "time_received_ns": st.integers(T0, T0 + 5 * 10**12),
    "icmp_type": st.integers(-1, 300),
    "icmp_code": st.integers(-1, 300),
    "vlan_id": st.integers(-1, 5000),
    "src_mac": st.sampled_from(["00:1b:21:3a:4f:5e", "0050.56c0.0001", "00-00-00-00-00-00", "zz:1b", ""]),
    "dst_mac": st.sampled_from(["a0b1c2d3e4f5", "00:1B:21:3A:4F:5E", "00:1b:21:3a:4f"]),
    "tcp_flags": st.integers(-1, 300),
}
odd_record = st.fixed_dictionaries(
    {
        "time_flow_start_ns": times,
        "time_flow_end_ns": times,
        "src_addr": addresses,
        "dst_addr": addresses,
        "proto": st.sampled_from([6, 17, 1, 58, 47, "TCP", "udp", 300, -1]),
        "bytes": st.one_of(st.integers(-5, 2**62), st.just(2**63 - 1)),
        "packets": st.integers(-5, 2**40),
    },
    optional={
        **{name: hostile_values for name in FIELDS if name not in PLAUSIBLE and name not in ODD_BUT_KNOWN},
        **ODD_BUT_KNOWN,
    },
)
# mostly a good flow of the hour (or a neighbouring one), with the odd fields above now and then
good_record = st.builds(
    lambda start, duration, pair, extra: {
        "time_flow_start_ns": start,
        "time_flow_end_ns": start + duration,
        "src_addr": pair[0],
        "dst_addr": pair[1],
        "proto": 6,
        "bytes": 1500,
        "packets": 3,
        **extra,
    },
    st.integers(T0 - 600 * S, T0 + 4200 * S),
    st.integers(0, 120 * S),
    st.one_of(
        st.tuples(st.ip_addresses(v=4).map(str), st.ip_addresses(v=4).map(str)),
        st.tuples(st.ip_addresses(v=6).map(str), st.ip_addresses(v=6).map(str)),
        st.tuples(addresses, addresses),
    ),
    st.fixed_dictionaries({}, optional=ODD_BUT_KNOWN),
)
plausible_record = st.one_of(good_record, good_record, odd_record)
lines = st.one_of(
    plausible_record.map(lambda r: json.dumps(r).encode()),
    st.dictionaries(st.sampled_from(FIELDS), hostile_values).map(lambda r: json.dumps(r, default=str).encode()),
    st.binary(max_size=200),
    st.text(string.printable, max_size=200).map(str.encode),
    st.just(b"x" * (MAX_LINE_BYTES + 10)),
    st.just(b""),
    st.just('{"src_addr": "\u00e9\u4e2d\U0001f600"}'.encode()),
)
LINE_REASONS = ("unparseable JSON: ", "not a JSON object", "empty line", "line longer than ")
MAC = re.compile(r"([0-9A-F]{2}-){5}[0-9A-F]{2}")


def assert_valid_flow(flow: dict) -> None:
    """Nothing invalid reaches the index: every value is in range and in its one canonical form."""
    source, destination = ipaddress.ip_address(flow["source.ip"]), ipaddress.ip_address(flow["destination.ip"])
    assert source.version == destination.version == (6 if flow["network.type"] == "ipv6" else 4)
    for address in (source, destination, ipaddress.ip_address(flow["observer.ip"])):
        assert address.version == 4 or address.ipv4_mapped is None  # mapped addresses are their IPv4 host
    assert (flow["source.ip"], flow["destination.ip"]) == (str(source), str(destination))
    assert 0 <= flow["network.bytes"] <= INT64_MAX and 0 <= flow["network.packets"] <= INT64_MAX
    assert flow["event.end"] >= flow["@timestamp"]
    assert HOUR.start <= flow["@timestamp"] < HOUR.end
    for port in (flow["source.port"], flow["destination.port"]):
        assert port is None or 0 <= port <= 65535
    for name in (
        "netflow.icmp_type_ipv4",
        "netflow.icmp_code_ipv4",
        "netflow.icmp_type_ipv6",
        "netflow.icmp_code_ipv6",
    ):
        assert flow[name] is None or 0 <= flow[name] <= 255
    assert flow["network.vlan.id"] is None or 1 <= flow["network.vlan.id"] <= 4095
    assert flow["netflow.sampling_interval"] is None or 1 <= flow["netflow.sampling_interval"] <= MAX_SAMPLING_RATE
    assert flow["netflow.tcp_control_bits"] is None or 0 <= flow["netflow.tcp_control_bits"] <= 255
    for mac in (flow["source.mac"], flow["destination.mac"]):
        assert mac is None or MAC.fullmatch(mac)


def valid_time(ns: int | None, received: int | None) -> bool:
    return (
        ns is not None
        and FIRST_PLAUSIBLE_NS <= ns < LAST_PLAUSIBLE_NS
        and (received is None or ns <= received + CLOCK_SKEW_NS)
    )


def of_another_hour(row: dict) -> bool:
    """Independently of the normalizer: a valid flow time, and not in this hour."""
    start, end, received = row["time_flow_start_ns"], row["time_flow_end_ns"], row["time_received_ns"]
    return valid_time(start, received) and valid_time(end, received) and end >= start and not T0 <= start < HOUR.end_ns


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lines, min_size=1, max_size=30))
def test_hostile_json_lines_are_quarantined_or_rejected_never_crash_never_pass(tmp_path, raw_lines):
    path = tmp_path / "goflow2-202110280300.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ").replace(b"\r", b" ") for line in raw_lines) + b"\n")

    received = list(goflow2_records(path))
    assert [r.source_row for r in received] == list(range(1, len(raw_lines) + 1))  # one outcome per line
    assert all((r.row is None) == (r.reason is not None) for r in received)
    for rejected in (r for r in received if r.row is None):  # the reason names the field, or the line's problem
        assert rejected.reason.startswith(LINE_REASONS) or rejected.reason.split(":")[0] in FIELDS, rejected.reason

    rows = [{**r.row, "source_file": str(path), "source_row": r.source_row} for r in received if r.row]
    result = normalize(pa.RecordBatch.from_pylist(rows, schema=RAW_FLOW_SCHEMA), HOUR)
    assert result.flows.num_rows + result.quarantine.num_rows + result.outside_hour == len(rows)
    assert result.outside_hour == sum(of_another_hour(row) for row in rows)  # only valid times of other hours
    for reason in result.quarantine.column("reason").to_pylist():
        assert reason.split(":")[0] in FIELDS, reason
    for flow in result.flows.to_pylist():
        assert_valid_flow(flow)


def test_read_time_reasons_name_the_problem(tmp_path):
    path = tmp_path / "goflow2-202110280300.jsonl"
    path.write_bytes(
        b'{"bytes": "lots", "src_addr": "10.0.0.1"}\n'
        b"[1, 2]\n"
        b"{broken\n"
        b"\n" + b"y" * (MAX_LINE_BYTES + 1) + b"\n"
        b'{"packets": 1e400}\n'
        b'{"proto": "TCP", "tcp_flags": "...AP.SF", "bytes": "1500", "packets": 3.0}\n'
    )
    outcomes = [(r.source_row, r.reason) for r in goflow2_records(path)]
    assert [number for number, _ in outcomes] == list(range(1, 8))
    assert [reason for _, reason in outcomes[:6]] == [
        "bytes: not a number",
        "not a JSON object",
        "unparseable JSON: unexpected character, expected a string key",
        "empty line",
        f"line longer than {MAX_LINE_BYTES} bytes",
        "unparseable JSON: number is infinity when parsed as double",  # no counter holds 1e400
    ]
    row = list(goflow2_records(path))[6].row
    assert (row["proto"], row["tcp_flags"], row["bytes"], row["packets"]) == (6, 0x1B, 1500, 3)


def test_csv_rows_with_the_wrong_shape_are_rejected_with_their_line(tmp_path):
    path = tmp_path / "flows-202110280300.csv"
    header = "time_flow_start_ns,time_flow_end_ns,src_addr,dst_addr,proto,bytes,packets"
    path.write_text(f"{header}\n{T0},{T0 + 5},10.0.0.1,10.0.0.2,6,100,1\n{T0},{T0},10.0.0.1\n{T0},{T0},a,b,6,x,1\n")
    outcomes = [(r.source_row, r.reason) for r in csv_records(path)]
    assert outcomes == [(2, None), (3, "expected 7 columns, found 3"), (4, "bytes: not a number")]
