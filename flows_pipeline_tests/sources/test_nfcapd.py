"""nfcapd files made by nfdump's own nfpcapd, read by the pipeline, checked against nfdump itself.

The hours run in process (the assets and resources of the code location, Dagster's in-process
executor): what is tested is how the source is read, not the CLI (test_pipeline's)."""

import os
import re
import shutil
import struct
import subprocess
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dagster import DagsterEventType

from flows_pipeline.es.summary_index import index_totals
from flows_pipeline.hour import hour_of
from flows_pipeline.sources.nfcapd import nfcapd_record_blocks, nfdump_batch, nfdump_received
from flows_pipeline.sources.nffile import BLOCK_HEADER, FILE_HEADER, NotReadHere, nffile_flow_batches
from flows_pipeline.sources.raw_schema import QUARANTINE_SCHEMA, RAW_FLOW_SCHEMA
from flows_pipeline.sources.source_reader import _batches, _nfcapd_batches
from flows_pipeline.tables.normalizer import normalize
from flows_pipeline_tests.netflow_v9 import Flow, collect, export_packet
from flows_pipeline_tests.pcap_writer import Packet, write_pcap
from flows_pipeline_tests.support import free_port, step_failures

T0 = hour_of("2021-10-28-03:00").start.timestamp()
NFDUMP_ENV = {"TZ": "UTC", "PATH": "/usr/bin:/bin"}


def traffic() -> list[Packet]:
    packets = []
    for i in range(40):  # the 03:00 hour: short TCP and UDP flows of one to three packets
        start = T0 + 60 + i * 75
        for k in range(1 + i % 3):
            proto = 6 if i % 4 else 17
            packets.append(
                Packet(start + k, f"10.0.0.{1 + i % 5}", f"192.0.2.{1 + i % 9}", 40000 + i, 443, proto, 120 + 37 * i)
            )
    # first seen at 03:59:50, last at 04:00:40: exported, and so filed, after its hour
    packets += [Packet(T0 + 3590 + 5 * k, "10.0.0.99", "198.51.100.7", 41000, 22, 6, 300) for k in range(11)]
    for i in range(10):  # the 04:00 hour, from 04:10
        packets += [
            Packet(T0 + 4200 + i * 60 + k, "10.0.1.1", f"203.0.113.{i + 1}", 50000 + i, 53, 17, 90) for k in range(2)
        ]
    packets.append(Packet(T0 + 7300, "10.0.2.2", "203.0.113.200", 50500, 123, 17, 76))  # 05:01:40, flushes the rest
    return packets


@pytest.fixture(scope="module")
def nfcapd_root(tmp_path_factory) -> Path:
    """Real nfcapd files in nfcapd's -S 1 layout (YYYY/MM/DD/nfcapd.YYYYMMDDhhmm), plus a file being written."""
    work = tmp_path_factory.mktemp("nfcapd")
    write_pcap(work / "traffic.pcap", traffic())
    root = work / "flows"
    root.mkdir()
    made = subprocess.run(
        ["nfpcapd", "-r", str(work / "traffic.pcap"), "-w", str(root), "-S", "1", "-t", "300", "-e", "60,30"],
        env=NFDUMP_ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    files = sorted(root.rglob("nfcapd.2*"))
    assert files and all(f.parent.relative_to(root).parts == ("2021", "10", "28") for f in files)
    # left by a collector that died at 03:05 (last written then): must never be read. With -S,
    # nfcapd writes the current file in the base folder and files it in YYYY/MM/DD when it rotates
    current = root / "nfcapd.current.4242"
    shutil.copy(files[0], current)
    os.utime(current, (T0 + 300, T0 + 300))
    return root


def nfdump_flows_by_hour(root: Path) -> dict[str, list[int]]:
    """[flows, packets, bytes] per hour of first-seen time, as nfdump prints the finished files."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for path in sorted(root.rglob("nfcapd.2*")):
        out = subprocess.run(
            ["nfdump", "-r", str(path), "-q", "-o", "fmt:%ts|%pkt|%byt"], env=NFDUMP_ENV, capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            if "|" not in line:
                continue  # "No matching flows"
            first, packets, octets = (part.strip() for part in line.split("|"))
            seen = datetime.strptime(first, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
            counts = totals[seen.strftime("%Y-%m-%d-%H:00")]
            counts[0] += 1
            counts[1] += int(packets)
            counts[2] += int(octets)
    return totals


def nfdump_window_summary(root: Path, window: str) -> tuple[int, int, int]:
    """nfdump's own summary (-s) of the flows inside a time window: flows, packets, bytes."""
    out = subprocess.run(
        ["nfdump", "-R", str(root), "-t", window, "-s", "proto/bytes"], env=NFDUMP_ENV, capture_output=True, text=True
    ).stdout
    found = re.search(r"total flows: (\d+), total bytes: (\d+), total packets: (\d+)", out)
    return int(found.group(1)), int(found.group(3)), int(found.group(2))


def file_holding(root: Path, address: str) -> Path:
    for path in sorted(root.rglob("nfcapd.2*")):
        printed = subprocess.run(
            ["nfdump", "-r", str(path), "-q", "-o", "fmt:%sa"], env=NFDUMP_ENV, capture_output=True
        )
        if address.encode() in printed.stdout:
            return path
    raise AssertionError(f"no file holds a flow from {address}")


def es_totals(es_client, alias: str) -> list[int]:
    """flows, packets, bytes through the alias, as nfdump's summary orders them."""
    totals = index_totals(es_client, alias)
    return [totals.flows, totals.packets, totals.bytes]


def nfcapd_env(project, root: Path, **extra: str) -> dict[str, str]:
    return {"FLOWS_SOURCE": "nfcapd", "FLOWS_SOURCE_ROOT": str(root), **extra}


def latest_metadata(project, asset: str) -> dict:
    with project.instance() as instance:
        entries = instance.all_logs(project.latest_run_id(), of_type=DagsterEventType.ASSET_MATERIALIZATION)
    for entry in entries:
        materialization = entry.dagster_event.event_specific_data.materialization
        if materialization.asset_key.to_user_string() == asset:
            return {key: value.value for key, value in materialization.metadata.items()}
    raise AssertionError(f"no materialization of {asset}")


def test_an_hour_of_nfcapd_files_matches_what_nfdump_reports(project, es_client, nfcapd_root):
    expected = nfdump_flows_by_hour(nfcapd_root)
    assert expected["2021-10-28-03:00"][0] == 41  # 40 flows and the one filed after its hour

    done = project.materialize_in_process("2021-10-28-03:00", extra_env=nfcapd_env(project, nfcapd_root))
    assert done.success, step_failures(done)
    alias = f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of('2021-10-28-03:00').label}"
    assert es_totals(es_client, alias) == expected["2021-10-28-03:00"]
    assert es_client.count(index=alias, query={"term": {"source.ip": "10.0.0.99"}})["count"] == 1  # the late one

    # the 04:00 hour reads the late flow's file too, and counts it as another hour's, not as bad data:
    done = project.materialize_in_process("2021-10-28-04:00", extra_env=nfcapd_env(project, nfcapd_root))
    assert done.success, step_failures(done)
    table = latest_metadata(project, "flow_table")
    # the 03:59:50 flow filed at 04:10, and the 05:01 flow of a file read within the lag
    assert (table["quarantined"], table["outside_hour"]) == (0, 2)
    alias = f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of('2021-10-28-04:00').label}"
    assert es_totals(es_client, alias) == expected["2021-10-28-04:00"]
    # an hour whose flows all end inside it: nfdump's own window summary agrees exactly
    assert tuple(expected["2021-10-28-04:00"]) == nfdump_window_summary(
        nfcapd_root, "2021/10/28.04:00:00-2021/10/28.04:59:59"
    )


def test_a_flow_arriving_after_the_lag_is_left_to_a_later_rerun(project, es_client, nfcapd_root):
    late_file = file_holding(nfcapd_root, "10.0.0.99")
    lag_minutes = 1  # shorter than the late file's distance from 04:00
    assert late_file.name > "nfcapd.202110280400"
    done = project.materialize_in_process(
        "2021-10-28-03:00", extra_env=nfcapd_env(project, nfcapd_root, FLOWS_SOURCE_LAG_MINUTES=str(lag_minutes))
    )
    assert done.success, step_failures(done)
    alias = f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of('2021-10-28-03:00').label}"
    assert es_client.count(index=alias)["count"] == 40


def test_a_truncated_file_fails_the_run_naming_it_or_is_skipped_when_configured(
    project, es_client, nfcapd_root, tmp_path
):
    root = tmp_path / "flows"
    shutil.copytree(nfcapd_root, root)
    victim = sorted(p for p in root.rglob("nfcapd.20211028031*"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])

    failed = project.materialize_in_process("2021-10-28-03:00", extra_env=nfcapd_env(project, root))
    assert not failed.success
    assert f"flow file {victim} is unreadable" in step_failures(failed)

    skipped = project.materialize_in_process(
        "2021-10-28-03:00", extra_env=nfcapd_env(project, root, FLOWS_BAD_FILES="skip")
    )
    assert skipped.success, step_failures(skipped)
    raw = latest_metadata(project, "raw_flows")
    assert raw["files_skipped"] == 1 and str(victim) in raw["skipped_files"]


def test_an_hour_without_files_fails_clearly_or_indexes_empty_when_configured(project, es_client, nfcapd_root):
    failed = project.materialize_in_process("2021-10-28-09:00", extra_env=nfcapd_env(project, nfcapd_root))
    assert not failed.success
    assert "no nfcapd files for hour 2021-10-28-09:00" in step_failures(failed)

    empty = project.materialize_in_process(
        "2021-10-28-09:00", extra_env=nfcapd_env(project, nfcapd_root, FLOWS_EMPTY_HOUR="empty")
    )
    assert empty.success, step_failures(empty)
    alias = f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of('2021-10-28-09:00').label}"
    assert es_client.count(index=alias)["count"] == 0


def _python_path(texts: list[bytes], source: str) -> pa.RecordBatch:
    batches = list(_batches((nfdump_received(source, 1 + i, text) for i, text in enumerate(texts)), 10**6))
    assert len(batches) == 1 and batches[0].rejected.num_rows == 0
    return batches[0].raw


def test_arrow_reads_nfdump_blocks_exactly_as_the_record_by_record_path(nfcapd_root):
    blocks = [(path, texts) for path in sorted(nfcapd_root.rglob("nfcapd.2*")) for texts in nfcapd_record_blocks(path)]
    assert sum(len(texts) for _, texts in blocks) > 40
    for path, texts in blocks:
        fast = nfdump_batch(texts, str(path), 1)
        assert fast is not None, f"nfdump's own output of {path} left the fast path"
        assert fast.equals(_python_path(texts, str(path)))
    assert any(pc.max(nfdump_batch(texts, "f", 1).column("tcp_flags")).as_py() for _, texts in blocks)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("src_port", "3000000000", "src_port: out of range"),  # beyond int32
        ("first", '"yesterday"', "Invalid isoformat"),
        ("src4_addr", '""', None),  # empty: the Python path reads the IPv6 field instead
        ("proto", '"tcp"', None),  # a protocol name: the Python path maps it
        ("in_bytes", "1.5", "bytes: not an integer"),
    ],
)
def test_a_block_with_an_odd_record_is_read_record_by_record(nfcapd_root, field, value, reason):
    path = sorted(nfcapd_root.rglob("nfcapd.2*"))[0]
    texts = next(nfcapd_record_blocks(path))
    odd = re.sub(rb'"%s" : [^,\n]*' % field.encode(), b'"%s" : %s' % (field.encode(), value.encode()), texts[1])
    assert odd != texts[1]
    assert nfdump_batch([texts[0], odd, *texts[2:]], str(path), 1) is None
    received = nfdump_received(str(path), 2, odd)
    assert (received.reason is None) if reason is None else (reason in received.reason)


def renamed_copy(nfcapd_root: Path, tmp_path: Path, rename) -> Path:
    """The nfcapd files in a flat folder, each named by `rename(its UTC time)`, mtimes kept."""
    root = tmp_path / "renamed"
    root.mkdir()
    for path in sorted(nfcapd_root.rglob("nfcapd.2*")):
        moment = datetime.strptime(path.name[len("nfcapd.") :], "%Y%m%d%H%M").replace(tzinfo=UTC)
        shutil.copy2(path, root / rename(moment))
    return root


@pytest.mark.parametrize(
    "rename",
    [
        pytest.param(lambda t: f"nfcapd.{(t + timedelta(hours=1)):%Y%m%d%H%M}+0100", id="nfcapd -Z, east of UTC"),
        pytest.param(lambda t: f"nfcapd.{(t - timedelta(hours=5)):%Y%m%d%H%M}-0500", id="nfcapd -Z, west of UTC"),
        pytest.param(lambda t: f"nfcapd.{t:%Y%m%d%H%M}05", id="sub-minute rotation, with seconds"),
    ],
)
def test_every_name_nfcapd_writes_puts_its_file_in_the_hour_of_its_time(
    project, es_client, nfcapd_root, tmp_path, rename
):
    expected = nfdump_flows_by_hour(nfcapd_root)["2021-10-28-03:00"]
    root = renamed_copy(nfcapd_root, tmp_path, rename)
    done = project.materialize_in_process("2021-10-28-03:00", extra_env=nfcapd_env(project, root))
    assert done.success, step_failures(done)
    alias = f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of('2021-10-28-03:00').label}"
    assert es_totals(es_client, alias) == expected
    raw = latest_metadata(project, "raw_flows")
    assert raw["files_read"] + raw["files_of_other_hours"] == len(list(root.iterdir()))


def test_a_file_no_hour_can_claim_fails_the_run_by_name_or_is_reported_and_nothing_is_silently_passed_over(
    project, es_client, nfcapd_root, tmp_path
):
    root = tmp_path / "flows"
    shutil.copytree(nfcapd_root, root)
    folder = next(root.rglob("nfcapd.2*")).parent
    unplaced = folder / "nfcapd.2021102803"  # a stamp cut short: no hour can be told
    shutil.copy(next(root.rglob("nfcapd.2*")), unplaced)
    (folder / ".nfstat").write_text("nfcapd's statistics file\n")  # not a flow file: reported, not read

    failed = project.materialize_in_process("2021-10-28-03:00", extra_env=nfcapd_env(project, root))
    assert not failed.success
    assert f"{unplaced}: its name has no valid time stamp" in step_failures(failed)
    # least of all would an hour be published empty past it
    empty = project.materialize_in_process(
        "2021-10-28-09:00", extra_env=nfcapd_env(project, root, FLOWS_EMPTY_HOUR="empty")
    )
    assert not empty.success and str(unplaced) in step_failures(empty)

    skipped = project.materialize_in_process(
        "2021-10-28-03:00", extra_env=nfcapd_env(project, root, FLOWS_BAD_FILES="skip")
    )
    assert skipped.success, step_failures(skipped)
    raw = latest_metadata(project, "raw_flows")
    assert raw["files_skipped"] == 1 and str(unplaced) in raw["skipped_files"]
    assert raw["files_not_of_the_source"] == 1 and raw["other_files"] == [str(folder / ".nfstat")]
    assert raw["files_in_progress"] == [str(root / "nfcapd.current.4242")]
    assert raw["files_read"] + raw["files_of_other_hours"] == len(list(root.rglob("nfcapd.2*"))) - 1


def test_a_file_still_being_written_within_the_window_fails_the_run_as_transient(
    project, es_client, nfcapd_root, tmp_path
):
    root = tmp_path / "flows"
    shutil.copytree(nfcapd_root, root)
    finished = sorted(root.rglob("nfcapd.2*"))
    for late in finished:  # the collector is at 03:10: the files after it are not written yet
        if late.name > "nfcapd.202110280310":
            late.unlink()
    current = root / "nfcapd.current.4242"
    os.utime(current)  # being written now, holding what arrived from 03:15 on
    failed = project.materialize_in_process("2021-10-28-03:00", extra_env=nfcapd_env(project, root))
    assert not failed.success
    text = step_failures(failed)
    assert f"{current} may hold flows of hour 2021-10-28-03:00 and is still being written" in text, text
    assert "from about 03:15:00 UTC" in text
    with project.instance() as instance:
        assert instance.get_run_by_id(failed.run_id).tags.get("flows/failure_kind") == "transient"


def test_egress_only_ingress_and_bidirectional_counters_are_kept_as_the_exporter_sent_them(tmp_path):
    exported = int(T0) + 600
    ingress = [Flow("192.0.2.1", "198.51.100.1", 40000, 443, 6, {1: 1000, 2: 10})]
    egress = [Flow("192.0.2.5", "198.51.100.5", 40001, 443, 6, {23: 5000, 24: 5})]  # OUT_BYTES/OUT_PKTS only
    both_ways = [Flow("192.0.2.9", "198.51.100.9", 40002, 443, 6, {1: 700, 2: 7, 23: 300, 24: 3})]
    packets = [
        export_packet(256, [8, 12, 7, 11, 4, 1, 2, 22, 21], ingress, exported, 1),
        export_packet(257, [8, 12, 7, 11, 4, 23, 24, 22, 21], egress, exported, 2),
        export_packet(258, [8, 12, 7, 11, 4, 1, 2, 23, 24, 22, 21], both_ways, exported, 3),
    ]
    [path] = collect(packets, tmp_path / "flows", free_port())
    texts = [text for block in nfcapd_record_blocks(path) for text in block]
    assert len(texts) == 3
    arrow = nfdump_batch(texts, str(path), 1)
    python = _python_path(texts, str(path))
    for batch in (arrow, python):  # both readers agree
        counters = {
            row["src_addr"]: (row["bytes"], row["packets"], row["reverse_bytes"], row["reverse_packets"])
            for row in pa.Table.from_batches([batch]).to_pylist()
        }
        assert counters == {
            "192.0.2.1": (1000, 10, None, None),
            "192.0.2.5": (5000, 5, None, None),  # egress-only: the out counters are the source's
            "192.0.2.9": (1000, 10, 300, 3),  # bytes both ways: out is what the destination sent back
        }
    flows = normalize(arrow, hour_of("2021-10-28-03:00")).flows.to_pylist()
    sides = {f["source.ip"]: (f["source.bytes"], f["destination.bytes"], f["network.bytes"]) for f in flows}
    assert sides == {"192.0.2.1": (1000, None, 1000), "192.0.2.5": (5000, None, 5000), "192.0.2.9": (700, 300, 1000)}


# NetFlow v9 templates of every element the native reader reads: IPv4 with flags, interfaces,
# VLAN and MACs; IPv6 with both directions' counters; ICMP and ICMPv6 type/code; egress-only
V4_FULL = [8, 12, 7, 11, 4, 6, 1, 2, 22, 21, 10, 14, 58, 56, 80, 57]
V6_BOTH_WAYS = [27, 28, 7, 11, 4, 6, 1, 2, 23, 24, 22, 21, 10, 14]
ICMP_V4, ICMP_V6 = [8, 12, 4, 32, 1, 2, 22, 21], [27, 28, 4, 32, 1, 2, 22, 21]
EGRESS_ONLY = [8, 12, 7, 11, 4, 23, 24, 22, 21]


@pytest.fixture(scope="module")
def every_element_file(tmp_path_factory) -> Path:
    """One nfcapd file, written by a real nfcapd from NetFlow v9, with flows of every shape above."""
    exported, mac = int(T0) + 600, 0x001122AABBCC
    shapes = [
        (V4_FULL, Flow("192.0.2.1", "198.51.100.1", 40000, 443, 6, {6: 0x1B, 1: 1000, 2: 10, 10: 3, 14: 7,
                                                                     58: 100, 56: mac, 80: mac + 1, 57: mac + 2})),
        (V6_BOTH_WAYS, Flow("2001:db8::1", "::ffff:192.0.2.7", 5353, 53, 17, {1: 700, 2: 7, 23: 300, 24: 3,
                                                                                10: 2**31 - 1})),
        (ICMP_V4, Flow("192.0.2.3", "198.51.100.3", 0, 0, 1, {32: 3 * 256 + 1, 1: 56, 2: 1})),  # unreachable/host
        (ICMP_V6, Flow("fe80::1", "ff02::1", 0, 0, 58, {32: 128 * 256, 1: 64, 2: 1})),  # echo request
        (EGRESS_ONLY, Flow("192.0.2.5", "198.51.100.5", 40001, 443, 6, {23: 5000, 24: 5})),
    ]  # fmt: skip
    packets = [
        export_packet(256 + i, template, [flow] * (1 + i), exported, 1 + i) for i, (template, flow) in enumerate(shapes)
    ]
    [path] = collect(packets, tmp_path_factory.mktemp("every-element") / "flows", free_port())
    return path


def _json_path(path: Path) -> tuple[pa.Table, pa.Table]:
    """The file read through nfdump's JSON alone (Arrow's blocks, else record by record): raw, rejected."""
    raw, rejected, number = [], [], 1
    for texts in nfcapd_record_blocks(path):
        fast = nfdump_batch(texts, str(path), number)
        received = (
            []
            if fast
            else list(_batches((nfdump_received(str(path), number + i, t) for i, t in enumerate(texts)), 8192))
        )
        raw += [fast] if fast else [b.raw for b in received]
        rejected += [b.rejected for b in received]
        number += len(texts)
    return pa.Table.from_batches(raw, RAW_FLOW_SCHEMA), pa.Table.from_batches(rejected, QUARANTINE_SCHEMA)


def _read(path: Path) -> tuple[pa.Table, pa.Table]:
    batches = list(_nfcapd_batches(path, 8192))
    return (
        pa.Table.from_batches([b.raw for b in batches], RAW_FLOW_SCHEMA),
        pa.Table.from_batches([b.rejected for b in batches], QUARANTINE_SCHEMA),
    )


def test_the_native_reader_reads_every_flow_as_nfdump_prints_it(every_element_file, nfcapd_root):
    files, compared = [every_element_file, *sorted(nfcapd_root.rglob("nfcapd.2*"))], 0
    for path in files:  # nfpcapd's files: one record shape a block; nfcapd's: many shapes, exporter records
        native = pa.Table.from_batches(list(nffile_flow_batches(path)), RAW_FLOW_SCHEMA)
        json_raw, json_rejected = _json_path(path)
        assert json_rejected.num_rows == 0 and native.num_rows == json_raw.num_rows
        for name in RAW_FLOW_SCHEMA.names:
            assert native.column(name).equals(json_raw.column(name)), (path, name)
        compared += native.num_rows
    assert compared > 60
    flows = {
        row["src_addr"]: row for row in pa.Table.from_batches(list(nffile_flow_batches(every_element_file))).to_pylist()
    }
    assert flows["192.0.2.3"]["icmp_type"] == 3 and flows["192.0.2.3"]["icmp_code"] == 1
    assert flows["192.0.2.3"]["src_port"] is None and flows["192.0.2.3"]["tcp_flags"] is None
    assert flows["fe80::1"]["icmp_type"] == 128 and flows["2001:db8::1"]["dst_addr"] == "::ffff:192.0.2.7"
    assert (flows["192.0.2.1"]["src_mac"], flows["192.0.2.1"]["dst_mac"]) == ("00:11:22:aa:bb:cc", "00:11:22:aa:bb:cd")
    assert (flows["192.0.2.1"]["vlan_id"], flows["192.0.2.1"]["in_if"], flows["192.0.2.1"]["tcp_flags"]) == (
        100,
        3,
        0x1B,
    )
    assert (flows["2001:db8::1"]["bytes"], flows["2001:db8::1"]["reverse_bytes"]) == (1000, 300)
    assert (flows["192.0.2.5"]["bytes"], flows["192.0.2.5"]["reverse_bytes"]) == (5000, None)
    assert flows["192.0.2.1"]["sampler_address"] == "127.0.0.1"


def _split_into_blocks(path: Path, out: Path, first_block_records: int, patch=None) -> None:
    """`path` rewritten with its data block's records in two blocks; `patch(records)` may change them."""
    data = bytearray(path.read_bytes())
    header = list(FILE_HEADER.unpack_from(data))
    assert header[10] == 1  # one data block
    count, size, block_type, flags = BLOCK_HEADER.unpack_from(data, FILE_HEADER.size)
    payload, records, offset = data[FILE_HEADER.size + BLOCK_HEADER.size :][:size], [], 0
    for _ in range(count):
        records.append(bytearray(payload[offset : offset + struct.unpack_from("<H", payload, offset + 2)[0]]))
        offset += len(records[-1])
    if patch:
        patch(records)
    blocks = b"".join(
        BLOCK_HEADER.pack(len(part), sum(map(len, part)), block_type, flags) + b"".join(part)
        for part in (records[:first_block_records], records[first_block_records:])
    )
    appendix = data[header[8] :]
    header[8], header[10] = FILE_HEADER.size + len(blocks), 2
    out.write_bytes(FILE_HEADER.pack(*header) + blocks + appendix)


def test_from_a_block_the_native_reader_cannot_read_on_nfdump_reads_the_file_and_nothing_differs(
    every_element_file, tmp_path
):
    # the file's records: exporter, IPv4, IPv6, IPv6, ICMP x3, ICMPv6 x4, egress-only x5, statistics
    def out_of_range_interface(records):  # the second IPv6 flow's INPUT_SNMP beyond int32: quarantined
        flow = records[3]
        assert struct.unpack_from("<HH", flow, 12) == (3, 36)  # its first element: IPv6 addresses
        misc = flow.find(struct.pack("<HH", 4, 20))
        struct.pack_into("<I", flow, misc + 4, 3_000_000_000)

    split = tmp_path / "nfcapd.202110280310"
    _split_into_blocks(every_element_file, split, 3, out_of_range_interface)
    natively = []
    with pytest.raises(NotReadHere, match="interface or VLAN"):
        for batch in nffile_flow_batches(split):
            natively.append(batch)
    assert sum(b.num_rows for b in natively) == 2  # the first block's IPv4 and IPv6 flows
    raw, rejected = _read(split)
    json_raw, json_rejected = _json_path(split)
    assert raw.equals(json_raw) and rejected.equals(json_rejected)
    assert rejected.column("source_row").to_pylist() == [3] and "in_if" in rejected.column("reason")[0].as_py()
    assert raw.column("source_row").to_pylist() == [1, 2, *range(4, 16)]  # 15 flows, numbered in file order


@pytest.mark.parametrize(("flag", "natively"), [("-y", True), ("-j", True), ("-z", False)])  # LZ4, BZ2, LZO
def test_a_compressed_file_reads_exactly_as_uncompressed(every_element_file, tmp_path, flag, natively):
    compressed = tmp_path / "nfcapd.202110280310"
    done = subprocess.run(["nfdump", "-r", str(every_element_file), flag, "-w", str(compressed)], env=NFDUMP_ENV,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = pa.Table.from_batches(list(nffile_flow_batches(every_element_file)), RAW_FLOW_SCHEMA)
    if natively:
        native = pa.Table.from_batches(list(nffile_flow_batches(compressed)), RAW_FLOW_SCHEMA)
        assert native.drop_columns(["source_file"]).equals(expected.drop_columns(["source_file"]))
    else:  # no well-kept LZO binding for Python: nfdump's JSON reads it
        with pytest.raises(NotReadHere, match="compression 1"):
            list(nffile_flow_batches(compressed))
    raw, rejected = _read(compressed)
    assert rejected.num_rows == 0
    assert raw.drop_columns(["source_file"]).equals(expected.drop_columns(["source_file"]))
