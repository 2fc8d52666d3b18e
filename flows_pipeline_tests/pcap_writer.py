"""A tiny pcap writer, so tests can make real nfcapd files with nfdump's own nfpcapd."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path

_ETHERNET_IPV4 = bytes.fromhex("001122334455 66778899aabb 0800".replace(" ", ""))


@dataclass(frozen=True)
class Packet:
    time: float  # seconds since the epoch
    src: str
    dst: str
    sport: int
    dport: int
    proto: int  # 6 TCP, 17 UDP
    size: int  # IP length in bytes (at least 40)


def _frame(packet: Packet) -> bytes:
    if packet.proto == 6:
        header = struct.pack("!HHIIBBHHH", packet.sport, packet.dport, 0, 0, 5 << 4, 0x18, 65535, 0, 0)
    else:
        header = struct.pack("!HHHH", packet.sport, packet.dport, 0, 0)
    payload = b"\0" * max(0, packet.size - 20 - len(header))
    if packet.proto == 17:
        header = struct.pack("!HHHH", packet.sport, packet.dport, 8 + len(payload), 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(header) + len(payload), 0, 0, 64, packet.proto, 0,
        socket.inet_aton(packet.src), socket.inet_aton(packet.dst),
    )  # fmt: skip
    return _ETHERNET_IPV4 + ip + header + payload


def write_pcap(path: Path, packets: list[Packet]) -> None:
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # Ethernet link type
        for packet in sorted(packets, key=lambda p: p.time):
            frame = _frame(packet)
            seconds = int(packet.time)
            micros = round((packet.time - seconds) * 1e6)
            out.write(struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame)
