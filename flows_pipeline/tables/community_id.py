"""The Community ID flow hash (version 1, seed 0): `network.community_id`, as Zeek, Suricata and
Filebeat compute it, so a flow here can be joined with their records of the same connection.

Spec: https://github.com/corelight/community-id-spec. The hash is SHA-1 over seed (2 bytes),
the two addresses (4 or 16 bytes), the protocol, a zero byte and, for TCP/UDP/SCTP/ICMP/ICMPv6,
two "ports", with the smaller endpoint first; ICMP types are mapped to port-like pairs as Zeek
does (a request and its reply hash alike; a message without a counterpart is one-way and never
reordered). The tests check every value against corelight's `communityid` package.

Everything but the SHA-1 itself is done on whole columns with numpy; hashlib is called once a
row on a fixed-size message (~0.5 µs each): the cost is in README.md's figures, and why the hash
is an option (FLOWS_COMMUNITY_ID).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Zeek's ICMP and ICMPv6 request <-> reply pairs (echo, timestamp, information, router/neighbour
# discovery, address mask, MLD, who-are-you, home agent address discovery)
_ICMP_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMPV6_PAIRS = {
    128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133, 135: 136, 136: 135,
    139: 140, 140: 139, 144: 145, 145: 144,
}  # fmt: skip
_BASE64 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", dtype=np.uint8)


def _pair_table(pairs: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    counterpart = np.full(256, -1, dtype=np.int64)
    for mtype, other in pairs.items():
        counterpart[mtype] = other
    return counterpart, counterpart >= 0


_ICMP_TABLES = {1: _pair_table(_ICMP_PAIRS), 58: _pair_table(_ICMPV6_PAIRS)}


@functools.lru_cache(maxsize=1 << 20)
def _packed(address: str) -> bytes:
    """16 bytes: an IPv6 address, or an IPv4 address followed by 12 zero bytes."""
    return ipaddress.ip_address(address).packed.ljust(16, b"\0")


def _addresses(column: pa.Array) -> np.ndarray:
    """(rows, 16) uint8: each canonical address's bytes, looked up once per distinct address."""
    encoded = pc.dictionary_encode(column)
    table = np.frombuffer(b"".join(_packed(a) for a in encoded.dictionary.to_pylist()), dtype=np.uint8)
    return table.reshape(-1, 16)[encoded.indices.to_numpy(zero_copy_only=False)]


def _big_endian_words(addresses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (addresses[:, :8].copy().view(">u8").ravel(), addresses[:, 8:].copy().view(">u8").ravel())


def _base64(digests: np.ndarray) -> np.ndarray:
    """(rows, 28) uint8: each 20-byte digest in standard base64 with its one '=' of padding."""
    padded = np.zeros((len(digests), 21), dtype=np.uint8)
    padded[:, :20] = digests
    groups = padded.reshape(-1, 7, 3).astype(np.uint32)
    value = (groups[:, :, 0] << 16) | (groups[:, :, 1] << 8) | groups[:, :, 2]
    sextets = np.stack([(value >> shift) & 63 for shift in (18, 12, 6, 0)], axis=-1).reshape(-1, 28)
    text = _BASE64[sextets]
    text[:, 27] = ord("=")
    return text


def community_ids(
    src: pa.Array, dst: pa.Array, proto: pa.Array, sport: pa.Array, dport: pa.Array, icmp: list[pa.Array]
) -> pa.Array:
    """`1:<base64>` per flow; null where a protocol with ports has none (nothing to hash by spec).

    Addresses are canonical (normalizer.canonical_address), ports null where the protocol has
    none; `icmp` holds the ICMP type and code (IPv4), then those of ICMPv6, null for other flows.
    """
    n = len(src)
    if n == 0:
        return pa.array([], pa.string())
    s, d = _addresses(src), _addresses(dst)
    protocol = proto.to_numpy(zero_copy_only=False).astype(np.int64)
    is_v6 = pc.match_substring(src, ":").to_numpy(zero_copy_only=False)

    def ints(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        return pc.fill_null(array, 0).to_numpy(zero_copy_only=False).astype(np.int64), pc.is_valid(array).to_numpy(
            zero_copy_only=False
        )

    sp, has_sp = ints(sport)
    dp, has_dp = ints(dport)
    has_ports = has_sp & has_dp
    one_way = np.zeros(n, dtype=bool)
    for number, (mtype, mcode) in zip((1, 58), (icmp[0:2], icmp[2:4]), strict=True):
        kind, kind_valid = ints(mtype)
        code, code_valid = ints(mcode)
        counterpart, paired = _ICMP_TABLES[number]
        here = (protocol == number) & kind_valid & code_valid
        sp = np.where(here, kind, sp)
        dp = np.where(here, np.where(paired[kind & 255], counterpart[kind & 255], code), dp)
        has_ports = np.where(protocol == number, here, has_ports)
        one_way |= here & ~paired[kind & 255]
    uses_ports = np.isin(protocol, (1, 6, 17, 58, 132))

    s_hi, s_lo = _big_endian_words(s)
    d_hi, d_lo = _big_endian_words(d)
    address_greater = (s_hi > d_hi) | ((s_hi == d_hi) & (s_lo > d_lo))
    address_equal = (s_hi == d_hi) & (s_lo == d_lo)
    flip = ~one_way & (address_greater | (address_equal & uses_ports & (sp > dp)))
    first = np.where(flip[:, None], d, s)
    second = np.where(flip[:, None], s, d)
    first_port, second_port = np.where(flip, dp, sp), np.where(flip, sp, dp)

    digests = np.zeros((n, 20), dtype=np.uint8)
    hashable = ~uses_ports | has_ports
    for v6 in (False, True):
        width = 16 if v6 else 4
        for ports in (False, True):
            rows = np.flatnonzero(hashable & (is_v6 == v6) & (uses_ports == ports))
            if not len(rows):
                continue
            message = np.zeros((len(rows), 2 + 2 * width + 2 + (4 if ports else 0)), dtype=np.uint8)
            message[:, 2 : 2 + width] = first[rows, :width]
            message[:, 2 + width : 2 + 2 * width] = second[rows, :width]
            message[:, 2 + 2 * width] = protocol[rows]
            if ports:
                at = 4 + 2 * width
                for offset, port in ((at, first_port[rows]), (at + 2, second_port[rows])):
                    message[:, offset] = port >> 8
                    message[:, offset + 1] = port & 255
            data = message.tobytes()
            size = message.shape[1]
            sha1 = hashlib.sha1
            digests[rows] = np.frombuffer(
                b"".join([sha1(data[i : i + size]).digest() for i in range(0, len(data), size)]), dtype=np.uint8
            ).reshape(-1, 20)
    text = np.concatenate([np.full((n, 2), np.frombuffer(b"1:", dtype=np.uint8)), _base64(digests)], axis=1)
    offsets = pa.py_buffer(np.arange(0, 30 * n + 1, 30, dtype=np.int32))
    ids = pa.Array.from_buffers(pa.string(), n, [None, offsets, pa.py_buffer(text.tobytes())])
    return pc.if_else(pa.array(hashable), ids, pa.scalar(None, pa.string()))
