"""nfcapd files read natively: nfdump 1.7's file layout 2, a data block at a time, without nfdump.

`nfdump -o json` prints ~1.3M flows a second, but parsing its text caps raw_flows at ~0.15x that
(bench/RESULTS.md, issue 22). The records are fixed binary structures, so they are read here with
numpy instead, field by field over a whole block (~14,000 flows, ~1 MiB), into the same raw batch
`nfcapd.nfdump_batch` makes of nfdump's JSON, value for value: the test suite compares the two on
files written by nfcapd and nfpcapd themselves.

Layout (nfdump v1.7.1: src/lib/nffileV2.h, src/lib/nfxV3.h; records expanded as
src/inline/nffile_inline.c's ExpandRecord_v3, printed as src/output/output_json.c), little-endian:

- file header (40 bytes): magic 0xA50C, layout version 2, nfdump version, creation time,
  compression, encryption, appendix blocks and their offset, block size, number of data blocks;
- data blocks from byte 40: a 12-byte header (records, payload bytes, type, flags), then records;
  the appendix (the file's ident and statistics) is a block of its own at its offset;
- a record: type, size, number of elements, engine type/id, exporter id, flags, NetFlow version
  (12 bytes); flows are type 11 (V3Record), the exporter and sampler records are skipped as nfdump
  skips them when it prints;
- a flow's elements: type, length (with its 4-byte header), then the element's fields.

Anything this reader does not read exactly as nfdump would print it raises `NotReadHere` before
a row of that block is passed on: an LZO-compressed or encrypted file, layout 1 (nfdump 1.6), a record
of nfdump 1.6's shape, an element of an unexpected length, a value that the JSON path checks
(an interface or VLAN above 2^31, a counter near 2^63). nfdump's JSON then reads the file from that
record on (source_reader.py), so such a file is slower, never different; and what nfdump itself would
complain of on stderr (an element or record type it does not know, an empty or oversized block)
is left to it, so that the JSON path fails the file with nfdump's own words.
"""

from __future__ import annotations

import bz2
import functools
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import lz4.block
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flows_pipeline.hour import NS_PER_MS
from flows_pipeline.sources.raw_schema import RAW_FLOW_SCHEMA

FILE_HEADER = struct.Struct("<HHIqBBHIqII")  # fileHeaderV2_t
BLOCK_HEADER = struct.Struct("<IIHH")  # dataBlock_t: NumRecords, size, type, flags
NFFILE_MAGIC = 0xA50C
LAYOUT_VERSION_2 = 2
NOT_COMPRESSED, LZO_COMPRESSED, BZ2_COMPRESSED, LZ4_COMPRESSED = 0, 1, 2, 3
BLOCK_BYTES_LIMIT = 5 * 1024 * 1024  # nffile.h's BUFFSIZE: what nfdump decompresses a block into
FLOW_BLOCK_TYPES = (2, 3)  # DATA_BLOCK_TYPE_2/3; type 4 holds arrays nfdump does not print
ARRAY_BLOCK_TYPE = 4

V3_RECORD = 11
# records nfdump reads for its own tables and does not print (src/lib/id.h): extension maps,
# exporter info/stat, samplers, NBAR, interface and VRF names
SKIPPED_RECORD_TYPES = frozenset({2, 7, 8, 12, 13, 14, 15})  # not 9: 1.7.1 calls it unknown, on stderr
RECORD_HEADER_BYTES = 12
ELEMENT_HEADER_BYTES = 4

# element id -> its length with the element header (nfxV3.h's EX*Size), for the elements read here
GENERIC_FLOW, IPV4_FLOW, IPV6_FLOW, FLOW_MISC, CNT_FLOW, VLAN, RECEIVED_V4, RECEIVED_V6, MAC_ADDR = (
    1, 2, 3, 4, 5, 6, 12, 13, 15,
)  # fmt: skip
ELEMENT_BYTES = {
    GENERIC_FLOW: 52, IPV4_FLOW: 12, IPV6_FLOW: 36, FLOW_MISC: 20, CNT_FLOW: 28, VLAN: 12,
    RECEIVED_V4: 8, RECEIVED_V6: 20, MAC_ADDR: 36,
}  # fmt: skip
# the elements ExpandRecord_v3 expands (nfxV3.h ids 1-17, 19-33, 36, 37); any other makes nfdump
# print an error, which the JSON path turns into the file's failure, so it is not read here either
KNOWN_ELEMENTS = frozenset({*range(1, 18), *range(19, 34), 36, 37})
ICMP_PROTOCOLS = (1, 58)  # nfdump prints icmp_type/icmp_code for these instead of ports and flags

_INT32_LIMIT = 2**31
# counters as the JSON path reads them: int64, and in + out must not overflow
_COUNTER_LIMIT = 2**62
_MS_LIMIT = (2**63 - 1) // NS_PER_MS


# Built on first use, not at import: an Arrow array made from Python objects loads pyarrow's pandas
# shim, i.e. imports pandas (~0.6 s, ~40 MB), which the run's orchestrating process never needs.
@functools.cache
def _byte_texts(hexadecimal: bool) -> pa.Array:
    """The 256 byte values as text: two hex digits (MAC addresses), or decimal (IPv4 octets)."""
    return pa.array([f"{i:02x}" if hexadecimal else str(i) for i in range(256)])


_BYTE_OFFSETS = {width: np.arange(width) for width in (1, 2, 4, 8)}


class NotReadHere(Exception):
    """The file holds what this reader does not read exactly as nfdump prints it (see the module)."""


@dataclass(frozen=True)
class NffileHeader:
    compression: int
    appendix_blocks: int
    appendix_offset: int
    data_blocks: int


def read_header(stream: BinaryIO, path: Path) -> NffileHeader:
    """The file header; NotReadHere unless it is an unencrypted layout 2 file, uncompressed or
    compressed with BZ2 or LZ4 (Python's bz2 and python-lz4 decompress as nfdump's libraries do;
    LZO has no well-kept Python binding)."""
    data = stream.read(FILE_HEADER.size)
    if len(data) < FILE_HEADER.size:
        raise NotReadHere(f"{path}: shorter than an nfdump file header")
    magic, version, _, _, compression, encryption, appendix_blocks, _, appendix_offset, _, blocks = FILE_HEADER.unpack(
        data
    )
    if magic != NFFILE_MAGIC or version != LAYOUT_VERSION_2:
        raise NotReadHere(f"{path}: magic {magic:#x}, layout {version} (read here: {NFFILE_MAGIC:#x}, layout 2)")
    if compression not in (NOT_COMPRESSED, BZ2_COMPRESSED, LZ4_COMPRESSED) or encryption:
        raise NotReadHere(f"{path}: compression {compression}, encryption {encryption}")
    return NffileHeader(compression, appendix_blocks, appendix_offset, blocks)


def nffile_blocks(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(block type, records, payload) of each data block in file order, one block in memory at a time.

    The chain of block headers is walked first, so that a truncated or inconsistent file raises
    NotReadHere before any block is passed on (nfdump then names what is wrong with it).
    """
    with path.open("rb") as stream:
        header = read_header(stream, path)
        size = path.stat().st_size
        blocks = []
        offset = FILE_HEADER.size
        while len(blocks) < header.data_blocks:
            if header.appendix_blocks and offset == header.appendix_offset:
                for _ in range(header.appendix_blocks):
                    offset += BLOCK_HEADER.size + _block_header(stream, offset, size, path)[1]
                continue
            records, payload, block_type, _ = _block_header(stream, offset, size, path)
            blocks.append((offset, records, payload, block_type))
            offset += BLOCK_HEADER.size + payload
        for offset, records, payload, block_type in blocks:
            stream.seek(offset + BLOCK_HEADER.size)
            yield block_type, records, _decompressed(stream.read(payload), header.compression, path, offset)


def _decompressed(payload: bytes, compression: int, path: Path, offset: int) -> bytes:
    """A block's records as nfdump's nfread() has them: every block of a compressed file is compressed."""
    try:
        if compression == LZ4_COMPRESSED:
            return lz4.block.decompress(payload, uncompressed_size=BLOCK_BYTES_LIMIT)  # an upper bound
        if compression == BZ2_COMPRESSED:
            unpacker = bz2.BZ2Decompressor()
            records = unpacker.decompress(payload, max_length=BLOCK_BYTES_LIMIT)  # memory bounded as nfdump's
            if not unpacker.eof:
                raise NotReadHere(f"{path}: the block at byte {offset} decompresses past {BLOCK_BYTES_LIMIT} bytes")
            return records
    except (lz4.block.LZ4BlockError, OSError, ValueError) as err:
        raise NotReadHere(f"{path}: the block at byte {offset} does not decompress: {err}") from err
    return payload


def _block_header(stream: BinaryIO, offset: int, file_size: int, path: Path) -> tuple[int, int, int, int]:
    stream.seek(offset)
    data = stream.read(BLOCK_HEADER.size)
    if len(data) < BLOCK_HEADER.size:
        raise NotReadHere(f"{path}: a block header at byte {offset} is cut off")
    records, payload, block_type, flags = BLOCK_HEADER.unpack(data)
    if offset + BLOCK_HEADER.size + payload > file_size:
        raise NotReadHere(f"{path}: the block at byte {offset} ends past the end of the file")
    if not records or not payload or payload > BLOCK_BYTES_LIMIT:  # nfread()'s "Corrupt data file"
        raise NotReadHere(f"{path}: the block at byte {offset} holds {records} records in {payload} bytes")
    return records, payload, block_type, flags


def nffile_flow_batches(path: Path, first_number: int = 1) -> Iterator[pa.RecordBatch]:
    """The file's flows as raw batches (RAW_FLOW_SCHEMA), one per data block, numbered from `first_number`.

    Raises NotReadHere before yielding any row of a block it cannot read exactly; the rows
    yielded until then are the file's first ones, in nfdump's order.
    """
    source, number = str(path), first_number
    for block_type, records, payload in nffile_blocks(path):
        if block_type == ARRAY_BLOCK_TYPE:
            continue
        if block_type not in FLOW_BLOCK_TYPES:
            raise NotReadHere(f"{path}: block type {block_type}")
        batch = block_flows(payload, records, source, number)
        if batch.num_rows:
            yield batch
        number += batch.num_rows


def block_flows(payload: bytes, records: int, source: str, first_number: int) -> pa.RecordBatch:
    """The flow records among the `records` of a data block's payload as a raw batch (RAW_FLOW_SCHEMA)."""
    buf = np.frombuffer(payload, np.uint8)
    flows = _flow_offsets(payload, records, source)
    n = len(flows)
    found = _element_offsets(buf, flows, source)
    if n == 0:
        return pa.RecordBatch.from_pylist([], schema=RAW_FLOW_SCHEMA)
    generic = found.get(GENERIC_FLOW)
    if generic is None or (generic < 0).any():
        raise NotReadHere(f"{source}: a flow record without its generic element (times, counters, ports)")
    ipv4, ipv6 = found.get(IPV4_FLOW), found.get(IPV6_FLOW)
    if (_present(ipv4, n) == _present(ipv6, n)).any():
        raise NotReadHere(f"{source}: a flow record with both or neither of an IPv4 and an IPv6 element")
    if (_present(found.get(RECEIVED_V4), n) & _present(found.get(RECEIVED_V6), n)).any():
        raise NotReadHere(f"{source}: a flow record with both an IPv4 and an IPv6 exporter address")

    first_ms, last_ms, received_ms, in_packets, in_bytes = (_field(buf, generic, 8 * i, 8) for i in range(5))
    src_port, dst_port = _field(buf, generic, 40, 2), _field(buf, generic, 42, 2)
    proto, tcp_flags = _field(buf, generic, 44, 1), _field(buf, generic, 45, 1)
    if max(first_ms.max(), last_ms.max(), received_ms.max()) > _MS_LIMIT:
        raise NotReadHere(f"{source}: a flow time beyond the year 2262")
    counters, misc, vlan = found.get(CNT_FLOW), found.get(FLOW_MISC), found.get(VLAN)
    out_packets, out_bytes = _field(buf, counters, 8, 8), _field(buf, counters, 16, 8)
    if any(v is not None and v.max() >= _COUNTER_LIMIT for v in (in_packets, in_bytes, out_packets, out_bytes)):
        raise NotReadHere(f"{source}: a counter at or above 2^62")
    in_if, out_if, vlan_id = _field(buf, misc, 0, 4), _field(buf, misc, 4, 4), _field(buf, vlan, 0, 4)
    if any(v is not None and v.max() >= _INT32_LIMIT for v in (in_if, out_if, vlan_id)):
        raise NotReadHere(f"{source}: an interface or VLAN id at or above 2^31")

    icmp = np.isin(proto, ICMP_PROTOCOLS)
    # bytes both ways: a bidirectional record, whose out_* is what the destination sent back
    one_way = ~((in_bytes > 0) & (out_bytes > 0)) if out_bytes is not None else None
    macs = found.get(MAC_ADDR)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(first_ms.astype(np.int64) * NS_PER_MS),
            pa.array(last_ms.astype(np.int64) * NS_PER_MS),
            _text_addresses(buf, ipv4, ipv6, (0, 0), n),
            _text_addresses(buf, ipv4, ipv6, (4, 16), n),
            _int32(src_port, icmp, n),
            _int32(dst_port, icmp, n),
            pa.array(proto.astype(np.int32)),
            _sum(in_bytes, out_bytes),
            _sum(in_packets, out_packets),
            _int64(out_bytes, one_way, n),
            _int64(out_packets, one_way, n),
            _int32(tcp_flags, icmp, n),
            _text_addresses(buf, found.get(RECEIVED_V4), found.get(RECEIVED_V6), (0, 0), n),
            pa.nulls(n, pa.int64()),  # nfdump prints no sampling rate
            _int32(in_if, _absent(misc), n),
            _int32(out_if, _absent(misc), n),
            pa.array(received_ms.astype(np.int64) * NS_PER_MS),
            _int32(dst_port >> 8, ~icmp, n),  # nfdump's icmp_type: the high byte of dstPort
            _int32(dst_port & 0xFF, ~icmp, n),
            _int32(vlan_id, _absent(vlan), n),
            _mac(buf, macs, 0, n),  # in_src_mac
            _mac(buf, macs, 16, n),  # in_dst_mac, which nfdump prints whenever it prints out_dst_mac
            pa.array([source] * n, pa.string()),
            pa.array(np.arange(first_number, first_number + n, dtype=np.int64)),
        ],
        schema=RAW_FLOW_SCHEMA,
    )


def _flow_offsets(payload: bytes, records: int, source: str) -> np.ndarray:
    """Byte offsets of the block's flow records; NotReadHere for a record type nfdump would not print
    the same way (nfdump 1.6's records, unknown types) or sizes that do not add up to the block."""
    end = len(payload)
    first_type, first_size = struct.unpack_from("<HH", payload) if end >= 4 else (0, 0)
    if first_type == V3_RECORD and first_size >= RECORD_HEADER_BYTES and records * first_size == end:
        # nfcapd writes one template's flows back to back: all of one size, checked before trusting it
        offsets = np.arange(0, end, first_size)
        buf = np.frombuffer(payload, np.uint8)
        if (_at(buf, offsets, 2) == V3_RECORD).all() and (_at(buf, offsets + 2, 2) == first_size).all():
            return offsets
    offsets, offset = [], 0
    for _ in range(records):
        if end - offset < 4:
            raise NotReadHere(f"{source}: a record header cut off at the end of a block")
        record_type, size = struct.unpack_from("<HH", payload, offset)
        if size < 4 or offset + size > end:
            raise NotReadHere(f"{source}: a record of {size} bytes at byte {offset} of a {end}-byte block")
        if record_type == V3_RECORD:
            if size < RECORD_HEADER_BYTES:
                raise NotReadHere(f"{source}: a flow record of {size} bytes")
            offsets.append(offset)
        elif record_type not in SKIPPED_RECORD_TYPES:
            raise NotReadHere(f"{source}: a record of type {record_type}")
        offset += size
    if offset != end:
        raise NotReadHere(f"{source}: {records} records of a block fill {offset} of its {end} bytes")
    return np.array(offsets, dtype=np.int64)


def _element_offsets(buf: np.ndarray, flows: np.ndarray, source: str) -> dict[int, np.ndarray]:
    """element id -> byte offset of that element's header in each flow record (-1: absent).

    Walks the records' element lists side by side, the i-th element of every record at once.
    """
    n = len(flows)
    count = _at(buf, flows + 4, 2)
    sizes = _at(buf, flows + 2, 2).astype(np.int64)
    at = flows + RECORD_HEADER_BYTES
    found: dict[int, np.ndarray] = {}
    for i in range(int(count.max()) if n else 0):
        walking = np.flatnonzero(count > i)
        here = at[walking]
        if (here + ELEMENT_HEADER_BYTES > flows[walking] + sizes[walking]).any():
            raise NotReadHere(f"{source}: a flow record's elements run past its end")
        kinds, lengths = _at(buf, here, 2), _at(buf, here + 2, 2).astype(np.int64)
        for kind in np.unique(kinds):
            which = kinds == kind
            if kind in ELEMENT_BYTES:
                if (lengths[which] != ELEMENT_BYTES[kind]).any():
                    raise NotReadHere(f"{source}: element {kind} of unexpected length")
                offsets = found.setdefault(int(kind), np.full(n, -1, np.int64))
                if (offsets[walking[which]] >= 0).any():
                    raise NotReadHere(f"{source}: element {kind} twice in a flow record")
                offsets[walking[which]] = here[which]
            elif kind not in KNOWN_ELEMENTS:
                raise NotReadHere(f"{source}: element {kind}, which nfdump 1.7.1 does not know")
            elif (lengths[which] < ELEMENT_HEADER_BYTES).any():
                raise NotReadHere(f"{source}: element {kind} of a length below its header")
        at[walking] = here + lengths
    if (at != flows + sizes).any():
        raise NotReadHere(f"{source}: a flow record's elements do not add up to its size")
    return found


def _at(buf: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """Unsigned little-endian values of `width` bytes at the byte offsets `offsets` of buf (a copy)."""
    n = len(offsets)
    if n > 1 and (stride := int(offsets[1] - offsets[0])) > 0 and (np.diff(offsets) == stride).all():
        # records of one shape: a strided view over the block, ~3x faster than gathering bytes
        return np.ndarray((n,), f"<u{width}", buf, int(offsets[0]), (stride,)).copy()
    return buf[offsets[:, None] + _BYTE_OFFSETS[width]].view(f"<u{width}").ravel()


def _field(buf: np.ndarray, elements: np.ndarray | None, offset: int, width: int) -> np.ndarray | None:
    """A field `offset` bytes into each record's element (`elements`: the element headers' offsets,
    -1 where a record lacks it, read as 0); None when no record of the block has the element."""
    if elements is None:
        return None
    absent = elements < 0
    values = _at(buf, np.where(absent, 0, elements + ELEMENT_HEADER_BYTES + offset), width)
    values[absent] = 0
    return values


def _present(elements: np.ndarray | None, n: int) -> np.ndarray:
    return elements >= 0 if elements is not None else np.zeros(n, bool)


def _absent(elements: np.ndarray | None) -> np.ndarray | None:
    return None if elements is None else elements < 0


def _int32(values: np.ndarray | None, null: np.ndarray | None, n: int) -> pa.Array:
    if values is None:
        return pa.nulls(n, pa.int32())
    return pa.array(values.astype(np.int32), mask=null if null is not None and null.any() else None)


def _int64(values: np.ndarray | None, null: np.ndarray | None, n: int) -> pa.Array:
    if values is None:
        return pa.nulls(n, pa.int64())
    return pa.array(values.astype(np.int64), mask=null if null is not None and null.any() else None)


def _sum(inward: np.ndarray, outward: np.ndarray | None) -> pa.Array:
    """in + out (bytes or packets): nfdump's out_* counters are the egress-only or reverse direction's."""
    total = inward.astype(np.int64)
    return pa.array(total if outward is None else total + outward.astype(np.int64))


def _text_addresses(buf: np.ndarray, v4: np.ndarray | None, v6: np.ndarray | None, offsets: tuple[int, int], n: int):
    """Addresses as nfdump prints them (inet_ntop): IPv4 from `v4` elements, IPv6 from `v6`, else null.

    An IPv4 address is stored in host order (printed from its high byte); an IPv6 one as two
    host-order 64-bit words, high word first.
    """
    has_v4 = v4 is not None and (v4 >= 0).all()
    if has_v4 and v6 is None:
        return _dotted(_field(buf, v4, offsets[0], 4))
    texts = np.full(n, None, object)
    if v4 is not None:
        rows = np.flatnonzero(v4 >= 0)
        texts[rows] = _dotted(_field(buf, v4[rows], offsets[0], 4)).to_numpy(zero_copy_only=False)
    if v6 is not None:
        rows = np.flatnonzero(v6 >= 0)
        start = v6[rows] + ELEMENT_HEADER_BYTES + offsets[1]
        network_order = buf[start[:, None] + _V6_NETWORK_ORDER]
        texts[rows] = [socket.inet_ntop(socket.AF_INET6, row.tobytes()) for row in network_order]
    return pa.array(texts, pa.string())


# each host-order (little-endian) 64-bit word's bytes reversed: the address in network order
_V6_NETWORK_ORDER = np.array([7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8])


def _dotted(addresses: np.ndarray) -> pa.Array:
    octets = [
        pc.take(_byte_texts(hexadecimal=False), pa.array((addresses >> shift) & 0xFF)) for shift in (24, 16, 8, 0)
    ]
    return pc.binary_join_element_wise(*octets, ".")


def _mac(buf: np.ndarray, macs: np.ndarray | None, offset: int, n: int) -> pa.Array:
    """A MAC address as nfdump prints it: the 64-bit field's bytes 5..0 as hex pairs with ":"."""
    if macs is None:
        return pa.nulls(n, pa.string())
    start = np.where(macs < 0, 0, macs + ELEMENT_HEADER_BYTES + offset)
    pairs = [pc.take(_byte_texts(hexadecimal=True), pa.array(buf[start + i])) for i in (5, 4, 3, 2, 1, 0)]
    text = pc.binary_join_element_wise(*pairs, ":")
    return pc.if_else(pa.array(macs < 0), pa.scalar(None, pa.string()), text) if (macs < 0).any() else text
