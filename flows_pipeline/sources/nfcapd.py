"""nfcapd files -> raw flow rows through `nfdump -o json` on a pipe, a block of records at a time:
the path for what the native reader (nffile.py) does not read itself (compressed files, nfdump
1.6's layout, values out of the raw schema's range), and the reference it is tested against.

nfdump prints each flow as a pretty-printed JSON object. A block of its output (~1 MiB, about
1,700 flows) is parsed by Arrow's JSON reader in one call and checked column by column; a block
that any check fails is parsed again record by record in Python, so a bad record still gets its
own reason and number in the quarantine. The Python path alone read ~87,000 flows a second, 13x
slower than nfdump prints them; with Arrow, ~190,000; the native reader ~1,000,000
(bench/RESULTS.md, issue 22).

Counters: nfdump keeps what an exporter sent as in_bytes/in_packets (NetFlow fields 1/2, IPFIX
octetDeltaCount) and out_bytes/out_packets (fields 23/24: an egress-only template, a "monitor
output" or ng_netflow export, where in_* are 0; or a bidirectional record's reverse direction).
A flow's bytes and packets are their sum, so an egress-only flow is never indexed as 0 bytes and a
bidirectional one counts both directions, as ECS's network.bytes does. A record with bytes both ways
is bidirectional: out_* is what the destination sent back (reverse_bytes, ECS destination.bytes); an
egress-only record's out_* is all the source's. (An exporter that sends both fields for the same
packets, seen at ingress and at egress, would be counted twice: none is known.)
"""

from __future__ import annotations

import functools
import io
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from flows_pipeline.hour import NS_PER_MS
from flows_pipeline.protocols import MAX_ADDRESS_CHARS, TCP_FLAG_LETTERS
from flows_pipeline.sources.raw_schema import RAW_FLOW_SCHEMA
from flows_pipeline.sources.records import BadFlowFileError, Received, RejectedRecord, coerce, kept_text

READ_BYTES = 1 << 20
# the fields the raw schema takes from nfdump's JSON, typed as nfdump writes them
NFDUMP_JSON_SCHEMA = pa.schema(
    [(name, pa.string()) for name in ("first", "last", "received", "src4_addr", "src6_addr", "dst4_addr", "dst6_addr")]
    + [(name, pa.int64()) for name in ("src_port", "dst_port", "proto", "in_bytes", "in_packets")]
    + [(name, pa.int64()) for name in ("out_bytes", "out_packets")]
    + [("tcp_flags", pa.string()), ("ip4_router", pa.string()), ("ip6_router", pa.string())]
    + [(name, pa.int64()) for name in ("input_snmp", "output_snmp", "icmp_type", "icmp_code", "src_vlan")]
    + [(name, pa.string()) for name in ("in_src_mac", "in_dst_mac", "out_dst_mac")]
)
# what nfdump prints for an address; the normalizer validates it
_ADDRESS = rf"^[0-9A-Fa-f:.]{{2,{MAX_ADDRESS_CHARS}}}$"
_INT32_LIMIT = 2**31


def nfdump_env() -> dict[str, str]:
    # TZ=UTC: nfdump prints times in local time, and is several times faster without a zone to apply
    return {**os.environ, "TZ": "UTC"}


def nfcapd_flow_count(path: Path) -> int:
    """What the file's own statistics record says it holds (`nfdump -I`)."""
    done = subprocess.run(["nfdump", "-r", str(path), "-I"], env=nfdump_env(), capture_output=True, text=True)
    match = re.search(r"^Flows: (\d+)$", done.stdout, re.MULTILINE)
    if done.returncode or "error" in done.stderr.lower() or not match:
        raise BadFlowFileError(path, f"nfdump -I: {(done.stderr or done.stdout).strip()[:500]}")
    return int(match.group(1))


def nfcapd_record_blocks(path: Path, skip: int = 0) -> Iterator[list[bytes]]:
    """The file's flow records as nfdump prints them, one JSON object's text each, a block at a time;
    from record `skip` + 1 on (the records before it were read natively, nffile.py).

    nfdump exits 0 even for a truncated or corrupt file (it prints "No matching flows" and an
    error on stderr), so the file is checked twice: nothing on stderr, and as many flows read as
    its statistics record announces.
    """
    expected = nfcapd_flow_count(path)
    read = 0
    with tempfile.TemporaryFile("w+") as errors:
        nfdump = subprocess.Popen(
            ["nfdump", "-r", str(path), "-o", "json"], env=nfdump_env(), stdout=subprocess.PIPE, stderr=errors
        )
        assert nfdump.stdout is not None
        pending = b""
        # records are pretty-printed over many lines and end with a line "}" (then "," or "]"):
        # split on that instead of looking at every line
        for block in iter(lambda: nfdump.stdout.read(READ_BYTES), b""):
            *records, pending = (pending + block).split(b"\n}")
            texts = [record[record.find(b"{") :] + b"}" for record in records if b"{" in record]
            read += len(texts)
            if skip:
                skipped = min(skip, len(texts))
                texts, skip = texts[skipped:], skip - skipped
            if texts:
                yield texts
        status = nfdump.wait()
        errors.seek(0)
        problem = errors.read().strip()
    if status or problem:
        raise BadFlowFileError(path, f"nfdump exited {status}: {problem[:500]}")
    if read != expected:
        raise BadFlowFileError(path, f"read {read} flows, but the file's statistics say {expected}")


def nfdump_batch(texts: list[bytes], source: str, first_number: int) -> pa.RecordBatch | None:
    """The records as one raw batch, or None if any of them needs the record-by-record path.

    Every check below stands for a case where the Python path would reject a record or read it
    differently (a type nfdump does not write, an out-of-range number, an empty address, ...).
    """
    # one object per line: nfdump indents every field line with a tab, and a string holds no newline
    lines = b"\n".join(texts).replace(b"\n\t", b"")
    options = pa_json.ParseOptions(explicit_schema=NFDUMP_JSON_SCHEMA, unexpected_field_behavior="ignore")
    try:
        table = pa_json.read_json(
            io.BytesIO(lines),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=len(lines) + 1),
            parse_options=options,
        )
        if table.num_rows != len(texts):
            return None
        flows = table.combine_chunks().to_batches()[0]
        col = flows.column
        start_ns, end_ns, received_ns = (_time_ns(col(name)) for name in ("first", "last", "received"))
        octets, packets = (
            pc.add_checked(col(f"in_{counter}"), pc.fill_null(col(f"out_{counter}"), 0))
            for counter in ("bytes", "packets")
        )
        # bidirectional: bytes counted both ways; then out_* is what the destination sent back
        two_way = pc.and_(pc.greater(col("in_bytes"), 0), pc.greater(pc.fill_null(col("out_bytes"), 0), 0))
        reverse_octets, reverse_packets = (
            pc.if_else(two_way, col(f"out_{counter}"), pa.scalar(None, pa.int64())) for counter in ("bytes", "packets")
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    addresses = [col(name) for name in ("src4_addr", "src6_addr", "dst4_addr", "dst6_addr", "ip4_router", "ip6_router")]
    int32s = [
        col(name)
        for name in ("src_port", "dst_port", "proto", "input_snmp", "output_snmp", "icmp_type", "icmp_code", "src_vlan")
    ]
    macs = [col(name) for name in ("in_src_mac", "in_dst_mac", "out_dst_mac")]
    flags = col("tcp_flags")
    if (
        any(not _all(pc.match_substring_regex(a, _ADDRESS)) for a in addresses)
        or any(not _all(pc.and_(pc.greater_equal(v, -_INT32_LIMIT), pc.less(v, _INT32_LIMIT))) for v in int32s)
        or any(not _all(pc.less_equal(pc.utf8_length(m), 17)) for m in macs)
        or not _all(pc.match_substring_regex(flags, "^" + "".join(f"[{c}.]" for c in TCP_FLAG_LETTERS) + "$"))
    ):
        return None
    bits = [
        pc.multiply(pc.cast(pc.not_equal(pc.utf8_slice_codeunits(flags, i, i + 1), "."), pa.int32()), 1 << (7 - i))
        for i in range(8)
    ]
    n = len(texts)
    return pa.RecordBatch.from_arrays(
        [
            start_ns,
            end_ns,
            pc.coalesce(col("src4_addr"), col("src6_addr")),
            pc.coalesce(col("dst4_addr"), col("dst6_addr")),
            pc.cast(col("src_port"), pa.int32()),
            pc.cast(col("dst_port"), pa.int32()),
            pc.cast(col("proto"), pa.int32()),
            octets,
            packets,
            reverse_octets,
            reverse_packets,
            functools.reduce(pc.add, bits),
            pc.coalesce(col("ip4_router"), col("ip6_router")),
            pa.nulls(n, pa.int64()),  # nfdump's JSON has no sampling rate
            pc.cast(col("input_snmp"), pa.int32()),
            pc.cast(col("output_snmp"), pa.int32()),
            received_ns if received_ns.null_count == 0 else pc.fill_null(received_ns, os.stat(source).st_mtime_ns),
            pc.cast(col("icmp_type"), pa.int32()),
            pc.cast(col("icmp_code"), pa.int32()),
            pc.cast(col("src_vlan"), pa.int32()),
            col("in_src_mac"),
            pc.coalesce(col("in_dst_mac"), col("out_dst_mac")),
            pa.array([source] * n, pa.string()),
            pa.array(range(first_number, first_number + n), pa.int64()),
        ],
        schema=RAW_FLOW_SCHEMA,
    )


def _all(checks: pa.Array) -> bool:
    """True when no non-null value fails (nulls are the Python path's None as well)."""
    return pc.all(checks).as_py() in (True, None)


def _time_ns(text: pa.Array) -> pa.Array:
    """nfdump's UTC times with milliseconds (2021-10-28T03:00:10.123) as epoch nanoseconds."""
    return pc.multiply(pc.cast(pc.cast(text, pa.timestamp("ms")), pa.int64()), NS_PER_MS)


def nfdump_received(source: str, number: int, text: bytes) -> Received:
    """One record the Python way: a row, or the reason it is unusable."""
    try:
        record = orjson.loads(text)
        row = coerce(_from_nfdump(record))
    except (orjson.JSONDecodeError, ValueError, RejectedRecord) as err:
        return Received(source, number, None, f"unusable nfdump record: {err}", kept_text(text))
    if row["time_received_ns"] is None:
        row["time_received_ns"] = os.stat(source).st_mtime_ns
    return Received(source, number, row)


def _nfdump_time_ns(value: object) -> int | None:
    """nfdump's JSON times are UTC (TZ=UTC) with milliseconds: 2021-10-28T03:00:10.123"""
    if not isinstance(value, str):
        return None
    moment = datetime.fromisoformat(value).replace(tzinfo=UTC)  # C parser: ~20x strptime's speed
    return round(moment.timestamp() * 1000) * NS_PER_MS


def _in_and_out(record: dict, counter: str) -> object:
    """in_<counter> plus out_<counter>, as the Arrow path adds them; a value that is no number is
    passed on for coerce() to reject, naming the field."""
    inward, outward = record.get(f"in_{counter}"), record.get(f"out_{counter}")
    if outward is None:
        return inward
    if not _is_int(outward):
        return outward
    return inward + outward if _is_int(inward) else inward


def _reverse(record: dict, counter: str) -> object:
    """out_<counter> of a bidirectional record (bytes both ways, as the Arrow path tells it); else None."""
    inward, outward = record.get("in_bytes"), record.get("out_bytes")
    two_way = _is_int(inward) and _is_int(outward) and inward > 0 and outward > 0
    return record.get(f"out_{counter}") if two_way else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _from_nfdump(record: dict) -> dict:
    """An nfdump JSON flow record with the raw schema's (GoFlow2) field names."""
    return {
        "time_flow_start_ns": _nfdump_time_ns(record.get("first")),
        "time_flow_end_ns": _nfdump_time_ns(record.get("last")),
        "time_received_ns": _nfdump_time_ns(record.get("received")),
        "src_addr": record.get("src4_addr") or record.get("src6_addr"),
        "dst_addr": record.get("dst4_addr") or record.get("dst6_addr"),
        "src_port": record.get("src_port"),
        "dst_port": record.get("dst_port"),
        "proto": record.get("proto"),
        "bytes": _in_and_out(record, "bytes"),
        "packets": _in_and_out(record, "packets"),
        "reverse_bytes": _reverse(record, "bytes"),
        "reverse_packets": _reverse(record, "packets"),
        "tcp_flags": record.get("tcp_flags"),
        "sampler_address": record.get("ip4_router") or record.get("ip6_router"),
        "in_if": record.get("input_snmp"),
        "out_if": record.get("output_snmp"),
        "icmp_type": record.get("icmp_type"),
        "icmp_code": record.get("icmp_code"),
        "vlan_id": record.get("src_vlan"),
        "src_mac": record.get("in_src_mac"),
        "dst_mac": record.get("in_dst_mac") or record.get("out_dst_mac"),
    }
