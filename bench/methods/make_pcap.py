#!/usr/bin/env python3
"""A pcap of N single-packet flows with distinct 5-tuples spread over one hour, for nfpcapd.

Written with the project's own test helper (flows_pipeline_tests/pcap_writer.py): N packets, one
per flow, alternately TCP and UDP, times evenly spread over [hour, hour + 3600 s), every
(src, dst, sport, dport, proto) distinct, so nfpcapd makes exactly N flow records of that hour.

    make_pcap.py --flows 1000000 --hour 2021-10-28T05:00 --out bench/work/nfcapd/flows-1000000/hour.pcap
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root: flows_pipeline_tests
from _common import report

from flows_pipeline_tests.pcap_writer import Packet, write_pcap


def packets(flows: int, hour: datetime) -> list[Packet]:
    start = hour.timestamp()
    step = 3600.0 / flows
    out = []
    for i in range(flows):
        # i -> distinct (src, sport): 10.a.b.c with 65,536 hosts x 15 ports; dst varies too
        host, port = divmod(i, 15)
        src = f"10.{(host >> 16) & 255}.{(host >> 8) & 255}.{host & 255}"
        dst = f"192.168.{(i >> 8) & 255}.{i & 255}"
        proto = 6 if i % 2 == 0 else 17
        dport = (53, 80, 443, 123, 22)[i % 5]
        out.append(Packet(start + i * step, src, dst, 40_000 + port, dport, proto, 60 + (i % 7) * 20))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, required=True)
    parser.add_argument("--hour", required=True, help="UTC, e.g. 2021-10-28T05:00")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    hour = datetime.fromisoformat(args.hour).replace(tzinfo=UTC)
    t0 = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_pcap(args.out, packets(args.flows, hour))
    report({"flows": args.flows, "pcap_bytes": args.out.stat().st_size, "write_s": round(time.perf_counter() - t0, 2)})


if __name__ == "__main__":
    main()
