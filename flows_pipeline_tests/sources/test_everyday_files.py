"""Files as spreadsheets, Windows tools and odd exporters write them: read correctly, or rejected
with a reason naming the line and the actual problem."""

import codecs
import os

import pytest

from flows_pipeline.hour import hour_of
from flows_pipeline.sources.records import BadFlowFileError, csv_records, goflow2_records
from flows_pipeline.sources.time_units import time_ns

T0 = hour_of("2021-10-28-03:00").start_ms * 1_000_000
S = 1_000_000_000
HEADER = ["time_flow_start_ns", "time_flow_end_ns", "src_addr", "dst_addr", "proto", "bytes", "packets"]
ROW = [str(T0), str(T0 + 5 * S), "10.0.0.1", "10.0.0.2", "6", "100", "1"]


def outcomes(received) -> list[tuple[int, str | None]]:
    return [(r.source_row, r.reason) for r in received]


@pytest.mark.parametrize(
    ("name", "encode"),
    [
        ("excel utf-8 with BOM, CRLF", lambda text: codecs.BOM_UTF8 + text.replace("\n", "\r\n").encode()),
        ("unicode text (UTF-16 LE with BOM)", lambda text: text.encode("utf-16")),
        ("UTF-16 BE with BOM", lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be")),
        ("old Mac CR line ends", lambda text: text.replace("\n", "\r").encode()),
    ],
)
def test_csv_in_the_encodings_and_line_ends_of_everyday_tools_is_read(tmp_path, name, encode):
    path = tmp_path / "flows-202110280300.csv"
    path.write_bytes(encode(",".join(HEADER) + "\n" + ",".join(ROW) + "\n"))
    received = list(csv_records(path))
    assert outcomes(received) == [(2, None)], name
    assert received[0].row["src_addr"] == "10.0.0.1" and received[0].row["bytes"] == 100


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_csv_with_semicolons_or_tabs_and_quoted_values_is_read(tmp_path, delimiter):
    path = tmp_path / "flows-202110280300.csv"
    quoted = [f'"{value}"' for value in ROW]
    path.write_text(delimiter.join(f'"{name}"' for name in HEADER) + "\n" + delimiter.join(quoted) + "\n")
    assert outcomes(csv_records(path)) == [(2, None)]


def test_csv_lines_that_cannot_be_flows_name_their_line_and_the_problem(tmp_path):
    path = tmp_path / "flows-202110280300.csv"
    path.write_bytes(
        (",".join(HEADER) + "\n").encode()
        + ",".join([*ROW[:2], "10.0.0.1", "caf\xe9", *ROW[4:]]).encode("cp1252")
        + b"\n"
        + ",".join([*ROW[:2], '"10.0.0.1', *ROW[3:]]).encode()
        + b"\n"
        + ",".join(["1.63539E+18", *ROW[1:]]).encode()
        + b"\n"
        + ",".join(["2021-10-28 03:00:05", *ROW[1:]]).encode()
        + b"\n"
    )
    assert outcomes(csv_records(path)) == [
        (2, "not UTF-8 text (byte 0xe9 at byte 53)"),
        (3, "unterminated quote (a value spanning lines is not a flow record)"),
        (4, "time_flow_start_ns: in scientific notation, which has lost digits (a spreadsheet's rounding?)"),
        (5, "time_flow_start_ns: ISO time without a zone (ambiguous: write Z or an offset)"),
    ]


def test_a_csv_header_with_a_bom_is_never_said_to_lack_its_first_column(tmp_path):
    path = tmp_path / "flows-202110280300.csv"
    path.write_bytes(codecs.BOM_UTF8 + ",".join(HEADER[1:]).encode() + b"\n")
    with pytest.raises(BadFlowFileError) as error:
        list(csv_records(path))
    assert "lacks the columns ['time_flow_start_ns']" in str(error.value)
    assert "it has ['time_flow_end_ns', 'src_addr'" in str(error.value)  # what it found, BOM gone


def test_json_lines_with_odd_whitespace_bom_or_a_trailing_array_comma_are_read(tmp_path):
    path = tmp_path / "goflow2-202110280300.jsonl"
    record = (
        f'{{"time_flow_start_ns": {T0}, "time_flow_end_ns": {T0 + S}, "src_addr": "10.0.0.1", '
        '"dst_addr": "10.0.0.2", "proto": 6, "bytes": 1, "packets": 1}'
    )
    path.write_bytes(
        codecs.BOM_UTF8
        + record.encode()
        + b"\r\n"
        + b" \t\x0b"
        + record.encode()
        + b"\x0c \n"
        + record.encode()
        + b",\n"
        + record[:-1].encode()
        + b", }\n"
    )
    assert outcomes(goflow2_records(path)) == [
        (1, None),
        (2, None),
        (3, None),
        (4, "unparseable JSON: trailing comma is not allowed"),
    ]


def test_times_in_the_configured_unit_and_iso_text_with_a_zone_are_read_as_nanoseconds(tmp_path):
    path = tmp_path / "goflow2-202110280300.jsonl"
    path.write_text(
        f'{{"time_flow_start_ns": {T0 // S}, "time_flow_end_ns": {T0 // S + 1}, "time_received_ns": {T0 // S + 60}}}\n'
        f'{{"time_flow_start_ns": "2021-10-28T03:00:00Z", "time_flow_end_ns": "2021-10-28T05:00:01+02:00"}}\n'
        f'{{"time_flow_start_ns": {T0}, "time_flow_end_ns": {T0}}}\n'
    )
    first, iso, nanoseconds = (r.row for r in goflow2_records(path, "s"))
    assert (first["time_flow_start_ns"], first["time_flow_end_ns"], first["time_received_ns"]) == (
        T0,
        T0 + S,
        T0 + 60 * S,
    )
    assert (iso["time_flow_start_ns"], iso["time_flow_end_ns"]) == (T0, T0 + S)
    assert iso["time_received_ns"] == os.stat(path).st_mtime_ns  # no receive time: when its file was written
    assert nanoseconds is None  # nanoseconds read as seconds do not fit 64 bits
    reason = list(goflow2_records(path, "s"))[2].reason
    assert reason == "time_flow_start_ns: out of range in seconds: looks like nanoseconds"


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (1635390000, "s", T0),
        (1635390000.5, "s", T0 + S // 2),
        (1635390000123, "ms", T0 + 123_000_000),
        ("1635390000123456", "us", T0 + 123_456_000),
        ("2021-10-28T03:00:00.250+00:00", "ns", T0 + 250_000_000),
        (None, "ns", None),
    ],
)
def test_time_values(value, unit, expected):
    assert time_ns(value, unit) == expected
