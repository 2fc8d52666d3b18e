"""Raw flow records -> the typed flow schema, batch by batch, with every rejected row accounted.

Each raw batch splits three ways: rows whose first-seen time is a valid time of another hour (not
errors: they belong to their own partition, so they are only counted here), valid flows of the
hour (the flow table), and the hour's invalid rows, which go to the quarantine with the first rule
they break. A time no partition can hold (0, another unit, before the first partition, after the
record was received) is invalid, never "another hour". Every reason starts with the raw field it
is about. Everything is vectorized in Arrow; Python only touches quarantined rows and distinct
address strings that are not plain IPv4.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from flows_pipeline.hour import FIRST_HOUR_KEY, Hour
from flows_pipeline.protocols import IANA_TRANSPORT_NAMES, MAX_ZONE_CHARS, PORTED_PROTOCOLS
from flows_pipeline.sources.raw_schema import QUARANTINE_SCHEMA
from flows_pipeline.sources.time_units import (
    CLOCK_SKEW_NS,
    FIRST_PLAUSIBLE_NS,
    LAST_PLAUSIBLE_NS,
    NS_PER_UNIT,
    TIME_UNITS,
    UNIT_NAMES,
    plausible_range,
)
from flows_pipeline.tables.community_id import community_ids
from flows_pipeline.tables.flow_schema import FLOW_TABLE_SCHEMA

_IPV4 = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$"
_DOTTED_QUAD = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_ZONE = re.compile(rf"[\w.-]{{1,{MAX_ZONE_CHARS}}}")
_MAC = (
    r"^(([0-9A-Fa-f]{2}:){5}|([0-9A-Fa-f]{2}-){5})[0-9A-Fa-f]{2}$"  # 00:1b:21:3a:4f:5e, 00-1B-...
    r"|^([0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}$|^[0-9A-Fa-f]{12}$"  # Cisco's 001b.213a.4f5e, bare hex
)


# The transport names by IANA number. Built on first use, not at import: an Arrow array made from Python
# objects loads pyarrow's pandas shim, i.e. imports pandas (~0.6 s, ~40 MB), which the run's
# orchestrating process never needs.
@functools.cache
def _transport_by_number() -> pa.Array:
    return pa.array([IANA_TRANSPORT_NAMES.get(n, str(n)) for n in range(256)])


INT64_MAX = 2**63 - 1
# sFlow agents sample at most 1 in 65,536 packets even on 400G links; a rate far beyond is another
# field (a counter, an interface index) in the wrong column, and would inflate the hour's totals
MAX_SAMPLING_RATE = 1_000_000
NOT_AN_ADDRESS = "not an IP address"
LEADING_ZEROS = "IPv4 with leading zeros (ambiguous: octal or decimal?)"


@dataclass(frozen=True)
class NormalizeOptions:
    """How a source's records are read as flows; the defaults live in the `FlowSource` resource."""

    time_unit: str = "ns"  # what the source's numeric times were in (already scaled to ns on read)
    community_id: bool = False  # compute network.community_id (costs ~0.5 s per million flows)


DEFAULT_OPTIONS = NormalizeOptions()  # GoFlow2's nanoseconds, no Community ID


@dataclass(frozen=True)
class NormalizedBatch:
    flows: pa.RecordBatch
    quarantine: pa.RecordBatch
    outside_hour: int


@functools.lru_cache(maxsize=1 << 20)
def canonical_address(text: str) -> tuple[str | None, str | None]:
    """(the address's one textual form, None), or (None, what is wrong with it).

    IPv4 is dotted decimal without leading zeros (010.0.0.1 is refused: octal to some tools,
    decimal to others). IPv6 is RFC 5952's lower-case compressed form; an IPv4-mapped address
    (::ffff:192.0.2.10) is its IPv4 host, as Elasticsearch itself stores it, but the deprecated
    IPv4-compatible form is not (::1 stays ::1). A zone id (fe80::1%eth0) names an interface of
    the exporter, not part of the address, and is dropped: Elasticsearch's `ip` has no place for it.
    """
    address, percent, zone = text.strip().partition("%")
    if _DOTTED_QUAD.fullmatch(address):
        if percent:
            return None, NOT_AN_ADDRESS
        if any(len(part) > 1 and part.startswith("0") for part in address.split(".")):
            return None, LEADING_ZEROS
        try:
            return str(ipaddress.IPv4Address(address)), None
        except ValueError:
            return None, NOT_AN_ADDRESS
    if ":" not in address or (percent and not _ZONE.fullmatch(zone)):
        return None, NOT_AN_ADDRESS
    try:
        v6 = ipaddress.IPv6Address(address)
    except ValueError:
        return None, NOT_AN_ADDRESS
    if v6.ipv4_mapped is not None:
        return str(v6.ipv4_mapped), None
    return str(v6), None


def canonical_addresses(addresses: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The column in canonical form, and per row what is wrong with an unusable address (else null).

    Flows repeat their hosts, so each distinct string is looked at once; plain IPv4 (the usual
    case) is canonical already and only matched by a regular expression.
    """
    distinct = pc.unique(addresses)
    others = pc.filter(distinct, pc.invert(pc.fill_null(pc.match_substring_regex(distinct, _IPV4), True)))
    texts = others.to_pylist()
    results = [canonical_address(text) for text in texts]
    if all(canonical == text for text, (canonical, _) in zip(texts, results, strict=True)):
        return addresses, pa.nulls(len(addresses), pa.string())
    where = pc.index_in(addresses, value_set=others)
    canonical = pc.take(pa.array([c for c, _ in results], pa.string()), where)
    problem = pc.take(pa.array([p for _, p in results], pa.string()), where)
    return pc.coalesce(canonical, addresses), problem


def _canonical_macs(macs: pa.Array) -> pa.Array:
    """ECS's form (00-11-22-AA-BB-CC) of colon, dash, Cisco-dotted or bare hex MACs; all zeros is
    what exporters send when they have no MAC, so it is null."""
    if macs.null_count == len(macs):
        return macs
    digits = pc.utf8_upper(pc.replace_substring_regex(macs, "[:.-]", ""))
    pairs = [pc.utf8_slice_codeunits(digits, i, i + 2) for i in range(0, 12, 2)]
    canonical = pc.binary_join_element_wise(*pairs, "-")
    return pc.if_else(pc.equal(digits, "000000000000"), pa.scalar(None, pa.string()), canonical)


@dataclass(frozen=True)
class _Prepared:
    """A raw batch's addresses in canonical form, with what was wrong with the unusable ones."""

    raw: pa.RecordBatch
    problems: dict[str, pa.Array]


def _prepare(raw: pa.RecordBatch) -> _Prepared:
    columns = {}
    problems = {}
    for name in ("src_addr", "dst_addr", "sampler_address"):
        columns[name], problems[name] = canonical_addresses(raw.column(name))
    arrays = [columns.get(name, raw.column(name)) for name in raw.schema.names]
    return _Prepared(pa.RecordBatch.from_arrays(arrays, schema=raw.schema), problems)


def _failures(prepared: _Prepared, options: NormalizeOptions) -> tuple[pa.Array, pa.Array]:
    """Which rows break a rule, and for those rows only, the first rule each breaks.

    Naming the reason takes a chain of string selections; only the (usually few) bad rows pay it.
    """
    checks = _checks(prepared, options)
    bad = functools.reduce(pc.or_, (pc.fill_null(failed, False) for _, failed in checks))
    reason = pa.nulls(pc.sum(bad).as_py() or 0, pa.string())
    if len(reason):
        for text, failed in reversed(checks):
            reason = pc.if_else(pc.fill_null(pc.filter(failed, bad), False), pa.scalar(text), reason)
    return bad, reason


def _outside(values: pa.Array, low: int, high: int) -> pa.Array:
    return pc.or_(pc.less(values, low), pc.greater(values, high))


def _time_checks(raw: pa.RecordBatch, unit: str) -> list[tuple[str, pa.Array]]:
    """The rules of the two flow times (sources/time_units.py gives each threshold's reason)."""
    checks: list[tuple[str, pa.Array]] = []
    received = raw.column("time_received_ns")
    for field in ("time_flow_start_ns", "time_flow_end_ns"):
        ns = raw.column(field)
        checks.append((f"{field}: 0 (the exporter sent no time)", pc.equal(ns, 0)))
        implausible = pc.or_(pc.less(ns, FIRST_PLAUSIBLE_NS), pc.greater_equal(ns, LAST_PLAUSIBLE_NS))
        as_written = pc.divide(ns, NS_PER_UNIT[unit]) if unit != "ns" else ns
        for other in TIME_UNITS:
            if other != unit:
                low, high = plausible_range(other)
                looks = pc.and_(pc.greater_equal(as_written, low), pc.less(as_written, high))
                checks.append(
                    (
                        f"{field}: looks like {UNIT_NAMES[other]}, not {UNIT_NAMES[unit]} (if the exporter "
                        f"writes {UNIT_NAMES[other]}, set FLOWS_SOURCE_TIME_UNIT={other})",
                        pc.and_(implausible, looks),
                    )
                )
        checks.append((f"{field}: before the first partition ({FIRST_HOUR_KEY})", pc.less(ns, FIRST_PLAUSIBLE_NS)))
        checks.append((f"{field}: after 2100-01-01", pc.greater_equal(ns, LAST_PLAUSIBLE_NS)))
        checks.append(
            (
                f"{field}: after the record arrived (time_received_ns, or its file's last write, + 5 min)",
                pc.greater(ns, pc.add(received, CLOCK_SKEW_NS)),
            )
        )
    checks.append(
        (
            "time_flow_end_ns: before time_flow_start_ns",
            pc.less(raw.column("time_flow_end_ns"), raw.column("time_flow_start_ns")),
        )
    )
    return checks


def _checks(prepared: _Prepared, options: NormalizeOptions) -> list[tuple[str, pa.Array]]:
    """Every rule a flow must keep, in order, each as (reason, where it is broken)."""
    raw = prepared.raw
    col = raw.column
    checks: list[tuple[str, pa.Array]] = [
        (f"{name}: missing", pc.is_null(col(name)))
        for name in ("time_flow_start_ns", "time_flow_end_ns", "src_addr", "dst_addr", "proto", "bytes", "packets")
    ]
    checks += _time_checks(raw, options.time_unit)
    for name, problem in prepared.problems.items():
        checks += [(f"{name}: {NOT_AN_ADDRESS}", pc.equal(problem, NOT_AN_ADDRESS))]
        checks += [(f"{name}: {LEADING_ZEROS}", pc.equal(problem, LEADING_ZEROS))]
    rate = col("sampling_rate")
    checks += [
        (
            "dst_addr: another IP version than src_addr",
            pc.not_equal(pc.match_substring(col("src_addr"), ":"), pc.match_substring(col("dst_addr"), ":")),
        ),
        ("proto: outside 0-255", _outside(col("proto"), 0, 255)),
        ("bytes: negative", pc.less(col("bytes"), 0)),
        ("packets: negative", pc.less(col("packets"), 0)),
        ("reverse_bytes: negative", pc.less(col("reverse_bytes"), 0)),
        ("reverse_packets: negative", pc.less(col("reverse_packets"), 0)),
        ("reverse_bytes: more than bytes (the flow's both directions)", pc.greater(col("reverse_bytes"), col("bytes"))),
        ("reverse_packets: more than packets", pc.greater(col("reverse_packets"), col("packets"))),
        ("src_port: outside 0-65535", _outside(col("src_port"), 0, 65535)),
        ("dst_port: outside 0-65535", _outside(col("dst_port"), 0, 65535)),
        ("tcp_flags: outside 0-255 (the TCP header's 8 flag bits)", _outside(col("tcp_flags"), 0, 255)),
        ("icmp_type: outside 0-255", _outside(col("icmp_type"), 0, 255)),
        ("icmp_code: outside 0-255", _outside(col("icmp_code"), 0, 255)),
        ("vlan_id: outside 0-4095", _outside(col("vlan_id"), 0, 4095)),
        ("src_mac: not a MAC address", pc.invert(pc.match_substring_regex(col("src_mac"), _MAC))),
        ("dst_mac: not a MAC address", pc.invert(pc.match_substring_regex(col("dst_mac"), _MAC))),
        ("sampling_rate: negative", pc.less(rate, 0)),
        (f"sampling_rate: above {MAX_SAMPLING_RATE:,} (implausible)", pc.greater(rate, MAX_SAMPLING_RATE)),
    ]
    if pc.max(rate).as_py() not in (None, 0, 1):
        # the scaled counters must fit Elasticsearch's long (and the table's int64): a * r > MAX <=> a > MAX // r
        limit = pc.divide(INT64_MAX, pc.max_element_wise(pc.fill_null(rate, 1), 1))
        checks += [
            ("bytes: times sampling_rate exceeds 2^63-1", pc.greater(col("bytes"), limit)),
            ("packets: times sampling_rate exceeds 2^63-1", pc.greater(col("packets"), limit)),
        ]
    return checks


def belongs_to_hour(times: pa.RecordBatch, hour: Hour, time_unit: str = "ns") -> pa.Array:
    """False only for flows whose start is a valid time of another hour (their own partition handles
    them); True for the hour's flows and for every flow with a time no partition holds, which the
    hour's quarantine takes. `times` holds the three raw time columns."""
    start = times.column("time_flow_start_ns")
    in_hour = pc.and_(pc.greater_equal(start, hour.start_ns), pc.less(start, hour.end_ns))
    bad_time = functools.reduce(pc.or_, (pc.fill_null(failed, False) for _, failed in _time_checks(times, time_unit)))
    return pc.or_(pc.fill_null(in_hour, True), bad_time)


TIME_COLUMNS = ["time_flow_start_ns", "time_flow_end_ns", "time_received_ns"]


def normalize(raw: pa.RecordBatch, hour: Hour, options: NormalizeOptions = DEFAULT_OPTIONS) -> NormalizedBatch:
    """Split one raw batch (RAW_FLOW_SCHEMA) into the hour's flows, its quarantine, and other hours."""
    mine = belongs_to_hour(raw, hour, options.time_unit)
    outside_hour = raw.num_rows - (pc.sum(mine).as_py() or 0)
    if outside_hour:
        raw = pc.filter(raw, mine)
    prepared = _prepare(raw)
    bad, reason = _failures(prepared, options)
    good = pc.filter(prepared.raw, pc.invert(bad)) if len(reason) else prepared.raw
    return NormalizedBatch(_to_flow_schema(good, options), _quarantine(raw, reason, bad), outside_hour)


def _icmp(good: pa.RecordBatch, field: str, proto: int) -> pa.Array:
    """ICMP type or code of the protocol's flows: as exported, or from the destination port, where
    NetFlow v5/v9 exporters (and nfdump) carry type * 256 + code."""
    port = good.column("dst_port")
    derived = pc.shift_right(port, 8) if field == "icmp_type" else pc.bit_wise_and(port, 255)
    value = pc.cast(pc.coalesce(good.column(field), derived), pa.int16())
    return pc.if_else(pc.equal(good.column("proto"), proto), value, pa.scalar(None, pa.int16()))


def _to_flow_schema(good: pa.RecordBatch, options: NormalizeOptions) -> pa.RecordBatch:
    col = good.column
    start_ns, end_ns = col("time_flow_start_ns"), col("time_flow_end_ns")
    proto = col("proto")
    ported = pc.is_in(proto, value_set=pa.array(sorted(PORTED_PROTOCOLS), pa.int32()))
    is_tcp = pc.equal(proto, 6)
    # Counters are exported sampled (1 in N packets); scale them so sums estimate the real traffic.
    # 0 and 1 both mean unsampled; the checks above keep the products within int64.
    rate = pc.max_element_wise(pc.fill_null(col("sampling_rate"), 1), 1)
    null_int32 = pa.scalar(None, pa.int32())
    source_port = pc.if_else(ported, col("src_port"), null_int32)
    destination_port = pc.if_else(ported, col("dst_port"), null_int32)
    icmp = [_icmp(good, field, number) for number in (1, 58) for field in ("icmp_type", "icmp_code")]
    arrays = [
        pc.cast(pc.divide(start_ns, NS_PER_UNIT["ms"]), pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        pc.cast(pc.divide(end_ns, NS_PER_UNIT["ms"]), pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        pc.subtract(end_ns, start_ns),
        col("src_addr"),
        source_port,
        col("dst_addr"),
        destination_port,
        pc.if_else(pc.match_substring(col("src_addr"), ":"), "ipv6", "ipv4"),
        pc.take(_transport_by_number(), proto),
        pc.cast(proto, pa.int16()),
        *(pc.multiply_checked(col(counter), rate) for counter in ("bytes", "packets")),
        # each side's share, scaled the same way: the source's is what the destination did not send
        *(
            pc.multiply_checked(pc.subtract(col(counter), pc.fill_null(col(f"reverse_{counter}"), 0)), rate)
            for counter in ("bytes", "packets")
        ),
        *(pc.multiply_checked(col(f"reverse_{counter}"), rate) for counter in ("bytes", "packets")),
        pc.if_else(is_tcp, pc.cast(pc.fill_null(col("tcp_flags"), 0), pa.int16()), pa.scalar(None, pa.int16())),
        pc.fill_null(col("sampler_address"), "0.0.0.0"),
        col("in_if"),
        col("out_if"),
        *icmp,
        pc.if_else(pc.is_null(col("sampling_rate")), pa.scalar(None, pa.int64()), rate),
        pc.if_else(pc.equal(col("vlan_id"), 0), null_int32, col("vlan_id")),  # 0: no VLAN tag (802.1Q)
        _canonical_macs(col("src_mac")),
        _canonical_macs(col("dst_mac")),
        community_ids(col("src_addr"), col("dst_addr"), proto, source_port, destination_port, icmp)
        if options.community_id
        else pa.nulls(good.num_rows, pa.string()),
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
