"""Records as collectors deliver them -> rows of the raw flow schema, or a reason to reject them.

Formats read as a stream (a bounded line at a time, never a whole file): GoFlow2 JSON lines and
CSV with the raw schema's column names as header; nfcapd files are read in nfcapd_records.py.
Every record yields exactly one `Received`: a row, or a reason
and the text as received, so nothing read is ever dropped without a trace.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from flows_pipeline.errors import TerminalError
from flows_pipeline.protocols import IANA_NUMBERS, MAX_ADDRESS_CHARS, TCP_FLAG_BITS, TCP_FLAG_LETTERS
from flows_pipeline.sources.raw_schema import ADDRESS_FIELDS, INT_FIELDS

MAX_LINE_BYTES = 65_536  # a flow record is a few hundred bytes; anything longer is not one
KEPT_RAW_CHARS = 2_048  # what the quarantine keeps of an overlong record
REQUIRED_CSV_COLUMNS = ("time_flow_start_ns", "time_flow_end_ns", "src_addr", "dst_addr", "proto", "bytes", "packets")
_INT32_FIELDS = frozenset({"src_port", "dst_port", "proto", "tcp_flags", "in_if", "out_if"})
_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)


class BadFlowFileError(TerminalError):
    """A file that cannot be read as a whole (corrupt, truncated, wrong format)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"flow file {path} is unreadable: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class Received:
    source_file: str
    source_row: int
    row: dict | None  # raw schema fields, when the record is usable
    reason: str | None = None  # why it is not
    raw_text: str = ""  # the record as received, kept for the quarantine


class RejectedRecord(ValueError):
    pass


def _as_int(field: str, value: object) -> int | None:
    if type(value) is int:  # the common case first: a JSON number (bool is a subclass, not int itself)
        low, high = _INT32 if field in _INT32_FIELDS else _INT64
        if not low <= value <= high:
            raise RejectedRecord(f"{field} out of range")
        return value
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RejectedRecord(f"non-numeric {field}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise RejectedRecord(f"non-integer {field}")
        value = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d{1,20}", text):
            raise RejectedRecord(f"non-numeric {field}")
        value = int(text)
    elif not isinstance(value, int):
        raise RejectedRecord(f"non-numeric {field}")
    low, high = _INT32 if field in _INT32_FIELDS else _INT64
    if not low <= value <= high:
        raise RejectedRecord(f"{field} out of range")
    return value


def _as_address(field: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_ADDRESS_CHARS:
        raise RejectedRecord(f"invalid {field}")
    return value.strip()


def _protocol(value: object) -> object:
    if isinstance(value, str) and value.strip().lower() in IANA_NUMBERS:
        return IANA_NUMBERS[value.strip().lower()]
    return value


def _tcp_flags(value: object) -> object:
    """nfdump writes flags as letters in fixed places ("...AP.SF"); GoFlow2 as a number."""
    if isinstance(value, str) and re.fullmatch(f"[{TCP_FLAG_LETTERS}.]{{8}}", value.strip()):
        return sum(TCP_FLAG_BITS[c] for c in value.strip() if c != ".")
    return value


def coerce(record: Mapping[str, object]) -> dict:
    """A raw-schema row from a record with GoFlow2 field names; raises RejectedRecord with the reason."""
    row: dict = {}
    for field in INT_FIELDS:
        value = record.get(field)
        if field == "proto":
            value = _protocol(value)
        elif field == "tcp_flags":
            value = _tcp_flags(value)
        row[field] = _as_int(field, value)
    for field in ADDRESS_FIELDS:
        row[field] = _as_address(field, record.get(field))
    return row


def _received(source: str, number: int, record: object, text: str) -> Received:
    if not isinstance(record, dict):
        return Received(source, number, None, "not a JSON object", text)
    try:
        return Received(source, number, coerce(record))
    except RejectedRecord as rejected:
        return Received(source, number, None, str(rejected), text)


def _bounded_lines(stream: BinaryIO) -> Iterator[tuple[bytes, bool]]:
    """(line, whole) pairs; a line over MAX_LINE_BYTES comes back cut short with whole=False."""
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:  # skip the rest of the overlong line without holding it
                rest = stream.readline(MAX_LINE_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
            yield line[:KEPT_RAW_CHARS], False
        else:
            yield line, True


def kept_text(raw: bytes) -> str:
    return raw[:KEPT_RAW_CHARS].decode("utf-8", errors="replace").rstrip("\r\n")


def goflow2_records(path: Path) -> Iterator[Received]:
    """GoFlow2 JSON lines (v2 field names); line numbers from 1."""
    source = str(path)
    with open(path, "rb") as stream:
        for number, (line, whole) in enumerate(_bounded_lines(stream), start=1):
            if not whole:
                yield Received(source, number, None, f"line longer than {MAX_LINE_BYTES} bytes", kept_text(line))
            elif not line.strip():
                yield Received(source, number, None, "empty line", "")
            else:
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError as err:
                    yield Received(source, number, None, f"unparseable JSON: {err.msg}", kept_text(line))
                    continue
                yield _received(source, number, record, kept_text(line))


def csv_records(path: Path) -> Iterator[Received]:
    """CSV whose header names raw-schema columns (at least REQUIRED_CSV_COLUMNS); rows numbered from 2."""
    source = str(path)
    with open(path, "rb") as stream:
        lines = _bounded_lines(stream)
        header_line = next(lines, (b"", True))[0]
        header = next(csv.reader([header_line.decode("utf-8", errors="replace")]), [])
        header = [name.strip() for name in header]
        missing = [name for name in REQUIRED_CSV_COLUMNS if name not in header]
        if missing:
            raise BadFlowFileError(path, f"CSV header lacks the columns {missing} (see the README for the header)")
        for number, (line, whole) in enumerate(lines, start=2):
            text = kept_text(line)
            if not whole:
                yield Received(source, number, None, f"line longer than {MAX_LINE_BYTES} bytes", text)
                continue
            if not line.strip():
                yield Received(source, number, None, "empty line", "")
                continue
            values = next(csv.reader([line.decode("utf-8", errors="replace")]))
            if len(values) != len(header):
                yield Received(source, number, None, f"expected {len(header)} columns, found {len(values)}", text)
                continue
            yield _received(source, number, dict(zip(header, values, strict=True)), text)
