"""A deterministic synthetic flow source: realistic enough to search, cheap enough to stream.

Every hour is generated batch by batch from a seed derived from its partition key, so the same
key always gives the same flows and no batch depends on the ones before it: an hour of any size
is produced in memory bounded by one batch.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from flows_pipeline.hour import MS_PER_HOUR, NS_PER_MS, Hour
from flows_pipeline.sources.raw_schema import RAW_FLOW_SCHEMA

# Protocol mix of a typical enterprise edge: mostly TCP, DNS/QUIC/NTP over UDP, a little ICMP.
_PROTOCOLS = np.array([6, 17, 1, 47, 50])
_PROTOCOL_WEIGHTS = np.array([0.70, 0.25, 0.035, 0.01, 0.005])
_SERVICE_PORTS = np.array([443, 80, 53, 22, 123, 25, 993, 3389, 8080, 445, 5353, 8443, 3306, 5432])
_SERVICE_WEIGHTS = np.array([0.45, 0.12, 0.15, 0.04, 0.04, 0.02, 0.02, 0.02, 0.03, 0.02, 0.03, 0.03, 0.015, 0.015])
# SYN|ACK|PSH|FIN (a complete session), SYN only (scan or refused), ACK, PSH|ACK, RST|ACK, SYN|ACK
_TCP_FLAGS = np.array([0x1B, 0x02, 0x10, 0x18, 0x14, 0x12])
_TCP_FLAG_WEIGHTS = np.array([0.55, 0.12, 0.15, 0.1, 0.05, 0.03])
# echo request, echo reply, port unreachable, time exceeded; ICMPv6 echo request and reply, neighbour solicitation
_ICMP_TYPE_CODES = np.array([8 << 8, 0, 3 << 8 | 3, 11 << 8])
_ICMPV6_TYPE_CODES = np.array([128 << 8, 129 << 8, 135 << 8])
_IPV6_SHARE = 0.1
_EXPORTERS = 4
_INTERNAL_HOSTS, _EXTERNAL_HOSTS, _IPV6_HOSTS = 4096, 16384, 2048


def _hour_seed(hour: Hour) -> int:
    return zlib.crc32(hour.key.encode())


def _host_pool(seed: int) -> tuple[pa.Array, int, int]:
    """One address pool: internal IPv4, then external IPv4, then IPv6 (with the two offsets)."""
    rng = np.random.default_rng([seed, 0])
    internal = [str(ipaddress.IPv4Address((10 << 24) | int(x))) for x in rng.integers(1, 1 << 20, _INTERNAL_HOSTS)]
    low, high = int(ipaddress.IPv4Address("11.0.0.0")), int(ipaddress.IPv4Address("223.0.0.0"))
    external = [str(ipaddress.IPv4Address(int(x))) for x in rng.integers(low, high, _EXTERNAL_HOSTS)]
    ipv6 = [
        str(ipaddress.IPv6Address((0x20010DB8 << 96) | (int(a) << 64) | int(b)))
        for a, b in zip(rng.integers(0, 1 << 16, _IPV6_HOSTS), rng.integers(1, 1 << 62, _IPV6_HOSTS), strict=True)
    ]
    return pa.array(internal + external + ipv6), _INTERNAL_HOSTS, _INTERNAL_HOSTS + _EXTERNAL_HOSTS


def _skewed_index(rng: np.random.Generator, size: int, pool: int) -> np.ndarray:
    """Heavy-tailed popularity: a few hosts are in most flows, as top-talker lists show."""
    return np.minimum((rng.random(size) ** 4 * pool).astype(np.int64), pool - 1)


def synthetic_batches(hour: Hour, rows: int, batch_rows: int = 131_072) -> Iterator[pa.RecordBatch]:
    """The hour's flows in RAW_FLOW_SCHEMA, `batch_rows` at a time."""
    seed = _hour_seed(hour)
    hosts = _host_pool(seed)
    exporters = pa.array([f"192.0.2.{i + 1}" for i in range(_EXPORTERS)])
    for batch_index, offset in enumerate(range(0, rows, batch_rows)):
        n = min(batch_rows, rows - offset)
        rng = np.random.default_rng([seed, batch_index + 1])
        yield _batch(rng, n, hour, hosts, exporters, first_row=offset + 1)


def _batch(
    rng: np.random.Generator,
    n: int,
    hour: Hour,
    hosts: tuple[pa.Array, int, int],
    exporters: pa.Array,
    first_row: int,
) -> pa.RecordBatch:
    is_v6 = rng.random(n) < _IPV6_SHARE
    outbound = rng.random(n) < 0.6
    pool, external_at, ipv6_at = hosts
    inside = _skewed_index(rng, n, _INTERNAL_HOSTS)
    outside = external_at + _skewed_index(rng, n, _EXTERNAL_HOSTS)
    v6_a = ipv6_at + _skewed_index(rng, n, _IPV6_HOSTS)
    v6_b = ipv6_at + rng.integers(0, _IPV6_HOSTS, n)
    src = pool.take(np.where(is_v6, v6_a, np.where(outbound, inside, outside)))
    dst = pool.take(np.where(is_v6, v6_b, np.where(outbound, outside, inside)))

    proto = rng.choice(_PROTOCOLS, n, p=_PROTOCOL_WEIGHTS)
    proto = np.where(is_v6 & (proto == 1), 58, proto)
    has_ports = (proto == 6) | (proto == 17)
    service = rng.choice(_SERVICE_PORTS, n, p=_SERVICE_WEIGHTS / _SERVICE_WEIGHTS.sum())
    ephemeral = rng.integers(32768, 61000, n)
    src_port = np.where(has_ports, ephemeral, 0)
    # ICMP flows carry type * 256 + code in the destination port, as NetFlow v5/v9 exporters write it
    icmp = np.where(proto == 58, _ICMPV6_TYPE_CODES[ephemeral % 3], _ICMP_TYPE_CODES[ephemeral % 4])
    dst_port = np.where(has_ports, service, np.where((proto == 1) | (proto == 58), icmp, 0))

    # Pareto packets (a few elephant flows carry most bytes), plausible mean packet sizes.
    packets = np.minimum(1 + (rng.pareto(1.2, n) * 3).astype(np.int64), 50_000_000)
    mean_size = np.clip(rng.lognormal(6.0, 0.8, n), 40, 1500).astype(np.int64)
    flow_bytes = packets * mean_size

    start_ms = hour.start_ms + rng.integers(0, MS_PER_HOUR, n)
    duration_ms = np.minimum(rng.exponential(4_000, n).astype(np.int64) * (packets > 1), 600_000)
    end_ms = np.minimum(start_ms + duration_ms, hour.start_ms + MS_PER_HOUR - 1)
    tcp_flags = np.where(proto == 6, rng.choice(_TCP_FLAGS, n, p=_TCP_FLAG_WEIGHTS), 0)

    columns = [
        start_ms * NS_PER_MS,
        end_ms * NS_PER_MS,
        src,
        dst,
        src_port,
        dst_port,
        proto,
        flow_bytes,
        packets,
        pa.nulls(n, pa.int64()),  # unidirectional flows: no reverse direction
        pa.nulls(n, pa.int64()),
        tcp_flags,
        exporters.take(rng.integers(0, len(exporters), n)),
        np.ones(n, dtype=np.int64),
        rng.integers(1, 49, n),
        rng.integers(1, 49, n),
        pa.nulls(n, pa.int64()),  # no receive time: generated, not received
        pa.nulls(n, pa.int32()),  # ICMP type and code come from the port field, as in NetFlow v5/v9
        pa.nulls(n, pa.int32()),
        pa.nulls(n, pa.int32()),
        pa.nulls(n, pa.string()),
        pa.nulls(n, pa.string()),
        pa.nulls(n, pa.string()).fill_null("synthetic"),
        np.arange(first_row, first_row + n, dtype=np.int64),
    ]
    arrays = [
        pa.array(c, type=f.type) if not isinstance(c, pa.Array) else c
        for c, f in zip(columns, RAW_FLOW_SCHEMA, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=RAW_FLOW_SCHEMA)
