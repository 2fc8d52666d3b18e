"""NetFlow v9 export packets (RFC 3954), for feeding a real nfcapd over loopback UDP in tests.

Only what the tests need: one template per packet and its data records, IPv4 or IPv6, counters,
interfaces, VLAN, MACs and times as the exporter's fields say. Times are the exporter's uptime in
ms, as RFC 3954 has them.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# field type -> length in bytes (RFC 3954, section 8)
FIELD_LENGTHS = {
    1: 4,  # IN_BYTES
    2: 4,  # IN_PKTS
    4: 1,  # PROTOCOL
    7: 2,  # L4_SRC_PORT
    8: 4,  # IPV4_SRC_ADDR
    11: 2,  # L4_DST_PORT
    12: 4,  # IPV4_DST_ADDR
    21: 4,  # LAST_SWITCHED
    22: 4,  # FIRST_SWITCHED
    23: 4,  # OUT_BYTES
    24: 4,  # OUT_PKTS
    6: 1,  # TCP_FLAGS
    10: 4,  # INPUT_SNMP
    14: 4,  # OUTPUT_SNMP
    27: 16,  # IPV6_SRC_ADDR
    28: 16,  # IPV6_DST_ADDR
    32: 2,  # ICMP_TYPE: type * 256 + code
    56: 6,  # IN_SRC_MAC
    57: 6,  # OUT_DST_MAC
    58: 2,  # SRC_VLAN
    80: 6,  # IN_DST_MAC
}
UPTIME_MS = 10_000_000


@dataclass(frozen=True)
class Flow:
    src: str
    dst: str
    src_port: int
    dst_port: int
    proto: int
    fields: dict[int, int]  # other field type -> value, e.g. {23: 5000, 24: 5} (OUT_BYTES, OUT_PKTS)
    first_ago_ms: int = 5_000  # before the packet's export time
    last_ago_ms: int = 1_000


def _value(flow: Flow, field_type: int) -> bytes:
    length = FIELD_LENGTHS[field_type]
    value = {
        8: int(ipaddress.ip_address(flow.src)),
        12: int(ipaddress.ip_address(flow.dst)),
        27: int(ipaddress.ip_address(flow.src)),
        28: int(ipaddress.ip_address(flow.dst)),
        7: flow.src_port,
        11: flow.dst_port,
        4: flow.proto,
        22: UPTIME_MS - flow.first_ago_ms,
        21: UPTIME_MS - flow.last_ago_ms,
    }.get(field_type, flow.fields.get(field_type, 0))
    return value.to_bytes(length, "big")


def export_packet(template_id: int, field_types: list[int], flows: list[Flow], unix_secs: int, sequence: int) -> bytes:
    """One v9 packet: the template flowset, then one data flowset of `flows` under it."""
    template = struct.pack("!HH", template_id, len(field_types)) + b"".join(
        struct.pack("!HH", t, FIELD_LENGTHS[t]) for t in field_types
    )
    template_set = struct.pack("!HH", 0, 4 + len(template)) + template
    records = b"".join(_value(flow, t) for flow in flows for t in field_types)
    records += b"\0" * (-(4 + len(records)) % 4)  # padded to 32 bits
    data_set = struct.pack("!HH", template_id, 4 + len(records)) + records
    header = struct.pack("!HHIIII", 9, 1 + len(flows), UPTIME_MS, unix_secs, sequence, 1)
    return header + template_set + data_set


def collect(packets: list[bytes], folder: Path, port: int) -> list[Path]:
    """The nfcapd files a real nfcapd writes from `packets`, sent to it over loopback UDP."""
    folder.mkdir(parents=True, exist_ok=True)
    nfcapd = subprocess.Popen(
        ["nfcapd", "-w", str(folder), "-p", str(port), "-b", "127.0.0.1", "-t", "60"],
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_until_bound(port, nfcapd)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for packet in packets:
                sender.sendto(packet, ("127.0.0.1", port))
        time.sleep(1.0)
    finally:
        nfcapd.terminate()  # SIGTERM: nfcapd closes its current file as a finished one
        nfcapd.wait(timeout=30)
    return sorted(p for p in folder.iterdir() if p.name.startswith("nfcapd.2"))


def _wait_until_bound(port: int, nfcapd: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Until nfcapd holds its UDP port (a fixed sleep lost the packets on a loaded machine)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if nfcapd.poll() is not None:
            raise RuntimeError(f"nfcapd exited {nfcapd.returncode}: {nfcapd.stderr.read().decode()[-500:]}")
        # /proc/net/udp lists bound sockets as <hex address>:<hex port>; a probe bind could race nfcapd's
        if f"0100007F:{port:04X}" in Path("/proc/net/udp").read_text():
            time.sleep(0.2)  # bound: a moment more to enter its receive loop
            return
        time.sleep(0.1)
    raise RuntimeError(f"nfcapd did not bind 127.0.0.1:{port} in {timeout_s} s")
