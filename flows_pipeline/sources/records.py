"""Records as collectors deliver them -> rows of the raw flow schema, or a reason to reject them.

Formats read as a stream (a bounded line at a time, never a whole file): GoFlow2 JSON lines and
CSV with the raw schema's column names as header; nfcapd files are read in nfcapd_records.py.
Every record yields exactly one `Received`: a row, or a reason
and the text as received, so nothing read is ever dropped without a trace.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import orjson

from flows_pipeline.errors import TerminalError
from flows_pipeline.protocols import IANA_NUMBERS, MAX_ADDRESS_CHARS, MAX_ZONE_CHARS, TCP_FLAG_BITS, TCP_FLAG_LETTERS
from flows_pipeline.sources.raw_schema import ADDRESS_FIELDS, INT_FIELDS, MAC_FIELDS, TIME_FIELDS
from flows_pipeline.sources.time_units import BadTime, time_ns

MAX_LINE_BYTES = 65_536  # a flow record is a few hundred bytes; anything longer is not one
KEPT_RAW_CHARS = 2_048  # what the quarantine keeps of an overlong record
REQUIRED_CSV_COLUMNS = ("time_flow_start_ns", "time_flow_end_ns", "src_addr", "dst_addr", "proto", "bytes", "packets")
_INT32_FIELDS = frozenset(
    {"src_port", "dst_port", "proto", "tcp_flags", "in_if", "out_if", "icmp_type", "icmp_code", "vlan_id"}
)
_MAX_MAC_CHARS = 17  # 00:11:22:33:44:55; the normalizer checks the form
# other names exporters give a field: GoFlow2 writes the VLAN of a sFlow sample as src_vlan
_ALIASES = {"vlan_id": ("src_vlan",)}
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
            raise RejectedRecord(f"{field}: out of range")
        return value
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RejectedRecord(f"{field}: not a number")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise RejectedRecord(f"{field}: not an integer")
        value = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d{1,20}", text):
            raise RejectedRecord(f"{field}: not a number")
        value = int(text)
    elif not isinstance(value, int):
        raise RejectedRecord(f"{field}: not a number")
    low, high = _INT32 if field in _INT32_FIELDS else _INT64
    if not low <= value <= high:
        raise RejectedRecord(f"{field}: out of range")
    return value


def _as_address(field: str, value: object) -> str | None:
    """The text of an address (the normalizer validates and canonicalizes it); a zone id may follow."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_ADDRESS_CHARS + 1 + MAX_ZONE_CHARS:
        raise RejectedRecord(f"{field}: not an IP address")
    return value.strip()


def _as_mac(field: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value.strip()) > _MAX_MAC_CHARS:
        raise RejectedRecord(f"{field}: not a MAC address")
    return value.strip()


def _as_time(field: str, value: object, time_unit: str) -> int | None:
    try:
        return time_ns(value, time_unit)
    except BadTime as bad:
        raise RejectedRecord(f"{field}: {bad}") from None


def _protocol(value: object) -> object:
    if isinstance(value, str) and value.strip().lower() in IANA_NUMBERS:
        return IANA_NUMBERS[value.strip().lower()]
    return value


def _tcp_flags(value: object) -> object:
    """nfdump writes flags as letters in fixed places ("...AP.SF"); GoFlow2 as a number."""
    if isinstance(value, str) and re.fullmatch(f"[{TCP_FLAG_LETTERS}.]{{8}}", value.strip()):
        return sum(TCP_FLAG_BITS[c] for c in value.strip() if c != ".")
    return value


def _field(record: Mapping[str, object], field: str) -> object:
    value = record.get(field)
    for alias in _ALIASES.get(field, ()):
        if value is None:
            value = record.get(alias)
    return value


def coerce(record: Mapping[str, object], time_unit: str = "ns") -> dict:
    """A raw-schema row from a record with GoFlow2 field names; raises RejectedRecord with the reason.

    Numeric times are in `time_unit` (the source's configuration); every reason starts with the field.
    """
    row: dict = {}
    for field in TIME_FIELDS:
        row[field] = _as_time(field, record.get(field), time_unit)
    for field in INT_FIELDS:
        value = _field(record, field)
        if field == "proto":
            value = _protocol(value)
        elif field == "tcp_flags":
            value = _tcp_flags(value)
        row[field] = _as_int(field, value)
    for field in ADDRESS_FIELDS:
        row[field] = _as_address(field, record.get(field))
    for field in MAC_FIELDS:
        row[field] = _as_mac(field, record.get(field))
    return row


def _received(source: str, number: int, record: object, text: str, time_unit: str, written_ns: int) -> Received:
    if not isinstance(record, dict):
        return Received(source, number, None, "not a JSON object", text)
    try:
        row = coerce(record, time_unit)
    except RejectedRecord as rejected:
        return Received(source, number, None, str(rejected), text)
    if row["time_received_ns"] is None:  # no receive time of its own: it arrived before its file was written
        row["time_received_ns"] = written_ns
    return Received(source, number, row)


class _LineStream(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


class _Utf8Lines:
    """A text file in UTF-16, or with old Mac line ends (CR alone), read back as UTF-8 lines ending in LF."""

    def __init__(self, stream: BinaryIO, encoding: str) -> None:
        self._text = io.TextIOWrapper(stream, encoding=encoding, errors="replace", newline=None)

    def readline(self, size: int = -1, /) -> bytes:
        return self._text.readline(size).encode()


def _line_stream(stream: BinaryIO) -> _LineStream:
    """The file's lines as UTF-8 bytes, whatever everyday tools wrote: a byte order mark (Excel's
    "CSV UTF-8", Notepad) is dropped, UTF-16 (Excel's "Unicode text") and CR line ends are converted."""
    head = stream.peek(65_536)[:65_536] if hasattr(stream, "peek") else b""
    if head.startswith(codecs.BOM_UTF8):
        stream.read(len(codecs.BOM_UTF8))
        head = head[len(codecs.BOM_UTF8) :]
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _Utf8Lines(stream, "utf-16")
    if b"\r" in head and b"\n" not in head:
        return _Utf8Lines(stream, "utf-8")
    return stream


def _bounded_lines(stream: _LineStream) -> Iterator[tuple[bytes, bool]]:
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


def _json_line(line: bytes) -> bytes:
    """The record of a JSON line, as some exporters write it: around it any ASCII whitespace (form
    feeds, vertical tabs), and after it the comma of a JSON array written one element a line."""
    line = line.strip()
    if line.endswith(b",") and line[:-1].rstrip().endswith(b"}"):
        line = line[:-1]
    return line


def goflow2_records(path: Path, time_unit: str = "ns") -> Iterator[Received]:
    """GoFlow2 JSON lines (v2 field names); line numbers from 1; numeric times in `time_unit`."""
    source = str(path)
    written_ns = path.stat().st_mtime_ns
    with open(path, "rb") as stream:
        for number, (line, whole) in enumerate(_bounded_lines(_line_stream(stream)), start=1):
            if not whole:
                yield Received(source, number, None, f"line longer than {MAX_LINE_BYTES} bytes", kept_text(line))
            elif not line.strip():
                yield Received(source, number, None, "empty line", "")
            else:
                try:
                    record = orjson.loads(_json_line(line))
                except orjson.JSONDecodeError as err:
                    yield Received(source, number, None, f"unparseable JSON: {err.msg}", kept_text(line))
                    continue
                yield _received(source, number, record, kept_text(line), time_unit, written_ns)


_DELIMITERS = (",", ";", "\t")  # comma; semicolon (spreadsheets where comma is the decimal mark); tab


def _csv_header(path: Path, line: bytes) -> tuple[list[str], str]:
    """The header's column names and the delimiter they are separated by."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadFlowFileError(path, f"CSV header is not UTF-8 text (byte {line[err.start]:#04x})") from None
    delimiter = max(_DELIMITERS, key=text.count)
    header = [name.strip().strip('"').strip() for name in next(csv.reader([text], delimiter=delimiter), [])]
    missing = [name for name in REQUIRED_CSV_COLUMNS if name not in header]
    if missing:
        raise BadFlowFileError(
            path,
            f"CSV header lacks the columns {missing}; it has {header[:20]} (separated by {delimiter!r}; "
            "see the README for the header)",
        )
    return header, delimiter


def _csv_values(line: bytes, delimiter: str) -> list[str]:
    """A CSV line's values; ValueError naming what is wrong with it."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 text (byte {line[err.start]:#04x} at byte {err.start + 1})") from None
    if text.count('"') % 2:
        raise ValueError("unterminated quote (a value spanning lines is not a flow record)")
    return next(csv.reader([text], delimiter=delimiter))


def csv_records(path: Path, time_unit: str = "ns") -> Iterator[Received]:
    """CSV whose header names raw-schema columns (at least REQUIRED_CSV_COLUMNS); rows numbered from 2.

    Read as spreadsheets and Windows tools write it: with or without a byte order mark, UTF-8
    or UTF-16, CRLF, LF or CR line ends, comma, semicolon or tab between values, values quoted
    or not. Numeric times are in `time_unit`.
    """
    source = str(path)
    written_ns = path.stat().st_mtime_ns
    with open(path, "rb") as stream:
        lines = _bounded_lines(_line_stream(stream))
        header, delimiter = _csv_header(path, next(lines, (b"", True))[0])
        for number, (line, whole) in enumerate(lines, start=2):
            text = kept_text(line)
            if not whole:
                yield Received(source, number, None, f"line longer than {MAX_LINE_BYTES} bytes", text)
                continue
            if not line.strip():
                yield Received(source, number, None, "empty line", "")
                continue
            try:
                values = _csv_values(line.rstrip(b"\r\n"), delimiter)
            except ValueError as err:
                yield Received(source, number, None, str(err), text)
                continue
            if len(values) != len(header):
                yield Received(source, number, None, f"expected {len(header)} columns, found {len(values)}", text)
                continue
            record = dict(zip(header, values, strict=True))
            yield _received(source, number, record, text, time_unit, written_ns)
