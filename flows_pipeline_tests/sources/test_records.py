"""Hostile input: every record read gives exactly one outcome, a usable row or a stated reason."""

import ipaddress
import json
import string

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows_pipeline.hour import hour_of
from flows_pipeline.sources.raw_schema import RAW_FLOW_SCHEMA
from flows_pipeline.sources.records import MAX_LINE_BYTES, csv_records, goflow2_records
from flows_pipeline.tables.normalizer import normalize

HOUR = hour_of("2021-10-28-03:00")
T0 = HOUR.start_ms * 1_000_000
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
PLAUSIBLE = ("time_flow_start_ns", "time_flow_end_ns", "src_addr", "dst_addr", "proto", "bytes", "packets")
plausible_record = st.fixed_dictionaries(
    {
        "time_flow_start_ns": st.integers(T0 - 10**12, T0 + 4 * 10**12),
        "time_flow_end_ns": st.integers(T0 - 10**12, T0 + 5 * 10**12),
        "src_addr": st.sampled_from(["10.0.0.1", "2001:db8::7", "999.0.0.1", "", "fe80::1%eth0"]),
        "dst_addr": st.sampled_from(["192.0.2.1", "::1", "not-an-ip", "1.1.1.1 ", "2001:db8::99"]),
        "proto": st.sampled_from([6, 17, 1, "TCP", "udp", 300, -1]),
        "bytes": st.integers(-5, 2**62),
        "packets": st.integers(-5, 2**40),
    },
    optional={name: hostile_values for name in FIELDS if name not in PLAUSIBLE},
)
lines = st.one_of(
    plausible_record.map(lambda r: json.dumps(r).encode()),
    st.dictionaries(st.sampled_from(FIELDS), hostile_values).map(lambda r: json.dumps(r, default=str).encode()),
    st.binary(max_size=200),
    st.text(string.printable, max_size=200).map(str.encode),
    st.just(b"x" * (MAX_LINE_BYTES + 10)),
    st.just(b""),
    st.just('{"src_addr": "\u00e9\u4e2d\U0001f600"}'.encode()),
)


def assert_valid_flow(flow: dict) -> None:
    source, destination = ipaddress.ip_address(flow["source.ip"]), ipaddress.ip_address(flow["destination.ip"])
    assert source.version == destination.version == (6 if flow["network.type"] == "ipv6" else 4)
    assert flow["network.bytes"] >= 0 and flow["network.packets"] >= 0
    assert flow["event.end"] >= flow["@timestamp"]
    assert HOUR.start <= flow["@timestamp"] < HOUR.end
    for port in (flow["source.port"], flow["destination.port"]):
        assert port is None or 0 <= port <= 65535


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lines, min_size=1, max_size=30))
def test_hostile_json_lines_are_quarantined_or_rejected_never_crash_never_pass(tmp_path, raw_lines):
    path = tmp_path / "goflow2-202110280300.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in raw_lines) + b"\n")

    received = list(goflow2_records(path))
    assert [r.source_row for r in received] == list(range(1, len(raw_lines) + 1))  # one outcome per line
    assert all((r.row is None) == (r.reason is not None) for r in received)

    rows = [{**r.row, "source_file": str(path), "source_row": r.source_row} for r in received if r.row]
    result = normalize(pa.RecordBatch.from_pylist(rows, schema=RAW_FLOW_SCHEMA), HOUR)
    assert result.flows.num_rows + result.quarantine.num_rows + result.outside_hour == len(rows)
    assert all(q["reason"] for q in result.quarantine.to_pylist())
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
