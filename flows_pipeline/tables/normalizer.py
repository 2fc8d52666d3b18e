"""Raw flow records -> the typed flow schema, batch by batch, with every rejected row accounted.

Each raw batch splits three ways: rows whose first-seen time is in another hour (not errors: they
belong to their own partition, so they are only counted here), valid flows of the hour (the flow
table), and the hour's invalid rows, which go to the quarantine with the first rule they break. Everything is
vectorized in Arrow; Python only touches quarantined rows and distinct IPv6 strings.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from flows_pipeline.hour import NS_PER_MS, Hour
from flows_pipeline.protocols import IANA_TRANSPORT_NAMES, MAX_ADDRESS_CHARS, PORTED_PROTOCOLS
from flows_pipeline.sources.raw_schema import QUARANTINE_SCHEMA
from flows_pipeline.tables.flow_schema import FLOW_TABLE_SCHEMA

_IPV4 = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$"
_IPV6_CANDIDATE = rf"^[0-9A-Fa-f:.]{{2,{MAX_ADDRESS_CHARS}}}$"
_TRANSPORT_BY_NUMBER = pa.array([IANA_TRANSPORT_NAMES.get(n, str(n)) for n in range(256)])


@dataclass(frozen=True)
class NormalizedBatch:
    flows: pa.RecordBatch
    quarantine: pa.RecordBatch
    outside_hour: int


def _valid_ip(addresses: pa.Array) -> pa.Array:
    """True where the string is an IPv4 or IPv6 address; null stays null.

    Flows repeat their hosts, so each distinct string is checked once: a regular expression for
    IPv4, Python's ipaddress (cached across batches) for IPv6.
    """
    distinct = pc.unique(addresses)
    v4 = pc.match_substring_regex(distinct, _IPV4)
    candidates = pc.filter(distinct, pc.and_not(pc.match_substring_regex(distinct, _IPV6_CANDIDATE), v4))
    good_v6 = [text for text in candidates.to_pylist() if text is not None and _is_ipv6(text)]
    good = pa.concat_arrays([pc.filter(distinct, v4), pa.array(good_v6, pa.string())])
    return pc.if_else(pc.is_null(addresses), pa.scalar(None, pa.bool_()), pc.is_in(addresses, value_set=good))


@functools.lru_cache(maxsize=1 << 20)
def _is_ipv6(text: str) -> bool:
    if ":" not in text:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _failures(raw: pa.RecordBatch) -> tuple[pa.Array, pa.Array]:
    """Which rows break a rule, and for those rows only, the first rule each breaks.

    Naming the reason takes a chain of string selections; only the (usually few) bad rows pay it.
    """
    checks = _checks(raw)
    bad = functools.reduce(pc.or_, (pc.fill_null(failed, False) for _, failed in checks))
    reason = pa.nulls(pc.sum(bad).as_py() or 0, pa.string())
    if len(reason):
        for text, failed in reversed(checks):
            reason = pc.if_else(pc.fill_null(pc.filter(failed, bad), False), pa.scalar(text), reason)
    return bad, reason


def _checks(raw: pa.RecordBatch) -> list[tuple[str, pa.Array]]:
    """Every rule a flow must keep, in order, each as (reason, where it is broken)."""
    col = raw.column
    checks: list[tuple[str, pa.Array]] = [
        (f"missing {name}", pc.is_null(col(name)))
        for name in ("time_flow_start_ns", "time_flow_end_ns", "src_addr", "dst_addr", "proto", "bytes", "packets")
    ]
    checks += [
        ("invalid source ip", pc.invert(_valid_ip(col("src_addr")))),
        ("invalid destination ip", pc.invert(_valid_ip(col("dst_addr")))),
        ("invalid exporter ip", pc.invert(_valid_ip(col("sampler_address")))),
        (
            "source and destination of different IP versions",
            pc.not_equal(pc.match_substring(col("src_addr"), ":"), pc.match_substring(col("dst_addr"), ":")),
        ),
        ("protocol outside 0-255", pc.or_(pc.less(col("proto"), 0), pc.greater(col("proto"), 255))),
        ("negative bytes", pc.less(col("bytes"), 0)),
        ("negative packets", pc.less(col("packets"), 0)),
        ("source port outside 0-65535", pc.or_(pc.less(col("src_port"), 0), pc.greater(col("src_port"), 65535))),
        ("destination port outside 0-65535", pc.or_(pc.less(col("dst_port"), 0), pc.greater(col("dst_port"), 65535))),
        ("end before start", pc.less(col("time_flow_end_ns"), col("time_flow_start_ns"))),
        ("negative sampling rate", pc.less(col("sampling_rate"), 0)),
    ]
    return checks


def belongs_to_hour(start_ns: pa.Array, hour: Hour) -> pa.Array:
    """True for flows first seen in the hour, and for those without a start time (the hour's
    quarantine says so); False for flows of other hours, which their own partition handles."""
    return pc.fill_null(pc.and_(pc.greater_equal(start_ns, hour.start_ns), pc.less(start_ns, hour.end_ns)), True)


def normalize(raw: pa.RecordBatch, hour: Hour) -> NormalizedBatch:
    """Split one raw batch (RAW_FLOW_SCHEMA) into the hour's flows, its quarantine, and other hours."""
    mine = belongs_to_hour(raw.column("time_flow_start_ns"), hour)
    outside_hour = raw.num_rows - (pc.sum(mine).as_py() or 0)
    if outside_hour:
        raw = pc.filter(raw, mine)
    bad, reason = _failures(raw)
    good = pc.filter(raw, pc.invert(bad)) if len(reason) else raw
    return NormalizedBatch(_to_flow_schema(good), _quarantine(raw, reason, bad), outside_hour)


def _to_flow_schema(good: pa.RecordBatch) -> pa.RecordBatch:
    col = good.column
    start_ns, end_ns = col("time_flow_start_ns"), col("time_flow_end_ns")
    proto = col("proto")
    ported = pc.is_in(proto, value_set=pa.array(sorted(PORTED_PROTOCOLS), pa.int32()))
    is_tcp = pc.equal(proto, 6)
    # Counters are exported sampled (1 in N packets); scale them so sums estimate the real traffic.
    rate = pc.max_element_wise(pc.fill_null(col("sampling_rate"), 1), 1)
    null_int32 = pa.scalar(None, pa.int32())
    arrays = [
        pc.cast(pc.divide(start_ns, NS_PER_MS), pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        pc.cast(pc.divide(end_ns, NS_PER_MS), pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        pc.subtract(end_ns, start_ns),
        col("src_addr"),
        pc.if_else(ported, col("src_port"), null_int32),
        col("dst_addr"),
        pc.if_else(ported, col("dst_port"), null_int32),
        pc.if_else(pc.match_substring(col("src_addr"), ":"), "ipv6", "ipv4"),
        pc.take(_TRANSPORT_BY_NUMBER, proto),
        pc.cast(proto, pa.int16()),
        pc.multiply_checked(col("bytes"), rate),
        pc.multiply_checked(col("packets"), rate),
        pc.if_else(is_tcp, pc.cast(pc.fill_null(col("tcp_flags"), 0), pa.int16()), pa.scalar(None, pa.int16())),
        pc.fill_null(col("sampler_address"), "0.0.0.0"),
        col("in_if"),
        col("out_if"),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=FLOW_TABLE_SCHEMA)


def _quarantine(raw: pa.RecordBatch, reason: pa.Array, bad: pa.Array) -> pa.RecordBatch:
    if not len(reason):
        return pa.RecordBatch.from_pylist([], schema=QUARANTINE_SCHEMA)
    rejected = pc.filter(raw, bad)
    record_fields = [name for name in raw.schema.names if name not in ("source_file", "source_row")]
    return pa.RecordBatch.from_pydict(
        {
            "reason": reason,
            "source": rejected.column("source_file"),
            "source_row": rejected.column("source_row"),
            "raw_record": [orjson.dumps(r).decode() for r in rejected.select(record_fields).to_pylist()],
        },
        schema=QUARANTINE_SCHEMA,
    )
