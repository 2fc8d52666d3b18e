"""GoFlow2 JSON lines and CSV files through the whole pipeline: good rows indexed, bad ones quarantined.

The hours run in process (the code location's assets and resources, Dagster's in-process
executor): what is tested is how the files are read, not the CLI (test_pipeline's)."""

import json

import pyarrow.parquet as pq

from flows_pipeline.hour import hour_of
from flows_pipeline_tests.support import step_failures

HOUR = "2021-10-28-03:00"
T0 = hour_of(HOUR).start_ms * 1_000_000
SECOND = 1_000_000_000


def goflow2(i: int, **changes) -> str:
    record = {
        "type": "IPFIX", "time_received_ns": T0 + (i + 2) * SECOND, "sequence_num": i,
        "time_flow_start_ns": T0 + i * SECOND, "time_flow_end_ns": T0 + (i + 1) * SECOND,
        "src_addr": f"10.1.0.{i % 200 + 1}", "dst_addr": "198.51.100.53", "src_port": 50000 + i, "dst_port": 53,
        "proto": "UDP", "bytes": 100 + i, "packets": 1, "sampler_address": "192.0.2.10", "sampling_rate": 0,
        "in_if": 3, "out_if": 7, "etype": "IPv6",
    }  # fmt: skip
    return json.dumps({**record, **changes})


def quarantine_of(project, hour_key: str) -> list[dict]:
    hour = hour_of(hour_key)
    return pq.read_table(
        project.storage / "flow_quarantine" / f"{hour.start:%Y-%m-%d}" / f"{hour.start:%H}.parquet"
    ).to_pylist()


def test_goflow2_lines_are_indexed_and_bad_ones_quarantined_with_file_and_line(project, es_client, tmp_path):
    root = tmp_path / "goflow2"
    root.mkdir()
    good = [goflow2(i) for i in range(50)]
    bad = [
        goflow2(50, src_addr="10.1.0.999"),
        goflow2(51, bytes="a lot"),
        goflow2(52, time_flow_end_ns=T0),  # ends before it starts
        "{not json",
        goflow2(53, time_flow_start_ns=T0 - 5 * SECOND, time_flow_end_ns=T0),  # the hour before: not bad data
        goflow2(54, dst_addr="2001:db8::53"),  # an IPv4 source cannot talk to an IPv6 destination
    ]
    (root / "goflow2-202110280300.jsonl").write_text("\n".join(good[:30] + bad) + "\n")
    (root / "goflow2-202110280330.jsonl").write_text("\n".join(good[30:]) + "\n")
    (root / "goflow2-202110280310.jsonl.current").write_text(goflow2(99) + "\n")  # still being written

    done = project.materialize_in_process(HOUR, extra_env={"FLOWS_SOURCE": "goflow2", "FLOWS_SOURCE_ROOT": str(root)})
    assert done.success, step_failures(done)

    alias = f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of(HOUR).label}"
    assert es_client.count(index=alias)["count"] == 50
    doc = es_client.search(index=alias, query={"term": {"source.port": 50007}})["hits"]["hits"][0]["_source"]
    assert (doc["destination.ip"], doc["network.transport"], doc["network.type"]) == ("198.51.100.53", "udp", "ipv4")
    quarantined = {(q["reason"], q["source"].rsplit("/", 1)[1], q["source_row"]) for q in quarantine_of(project, HOUR)}
    assert quarantined == {
        ("src_addr: not an IP address", "goflow2-202110280300.jsonl", 31),
        ("bytes: not a number", "goflow2-202110280300.jsonl", 32),
        ("time_flow_end_ns: before time_flow_start_ns", "goflow2-202110280300.jsonl", 33),
        ("unparseable JSON: unexpected character, expected a string key", "goflow2-202110280300.jsonl", 34),
        ("dst_addr: another IP version than src_addr", "goflow2-202110280300.jsonl", 36),
    }


def test_csv_files_with_the_documented_header_are_indexed(project, es_client, tmp_path):
    root = tmp_path / "csv"
    root.mkdir()
    header = "time_flow_start_ns,time_flow_end_ns,src_addr,dst_addr,src_port,dst_port,proto,bytes,packets,tcp_flags"
    rows = [
        f"{T0 + i * SECOND},{T0 + (i + 3) * SECOND},10.2.0.{i + 1},198.51.100.{i + 1},"
        f"{40000 + i},443,6,{1000 * i},{i + 1},27"
        for i in range(20)
    ]
    (root / "flows-202110280300.csv").write_text("\n".join([header, *rows, "1,2,3"]) + "\n")

    done = project.materialize_in_process(HOUR, extra_env={"FLOWS_SOURCE": "csv", "FLOWS_SOURCE_ROOT": str(root)})
    assert done.success, step_failures(done)
    alias = f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of(HOUR).label}"
    total = es_client.search(index=alias, size=0, aggs={"bytes": {"sum": {"field": "network.bytes"}}})
    assert total["hits"]["total"]["value"] == 20
    assert total["aggregations"]["bytes"]["value"] == sum(1000 * i for i in range(20))
    assert [(q["reason"], q["source_row"]) for q in quarantine_of(project, HOUR)] == [
        ("expected 10 columns, found 3", 22)
    ]


def test_collector_oddities_are_quarantined_by_kind_and_the_rest_indexed_with_what_security_teams_search(
    project, es_client, tmp_path
):
    """The issue-12 kinds end to end: impossible times, an overflowing sampled counter, IPv4-mapped
    addresses, ICMP, VLAN and MAC fields, the Community ID; the summary agrees with Elasticsearch."""
    root = tmp_path / "goflow2"
    root.mkdir()
    ordinary = [goflow2(i, sampling_rate=10, vlan_id=20, src_mac="00:1b:21:3a:4f:5e") for i in range(20)]
    mapped = [goflow2(20 + i, src_addr="::ffff:10.1.0.1", dst_addr="::FFFF:198.51.100.53") for i in range(3)]
    icmp = goflow2(23, proto="ICMP", src_port=0, dst_port=8 << 8)
    odd = [
        goflow2(24, time_flow_start_ns=0, time_flow_end_ns=0),
        goflow2(25, time_flow_start_ns=T0 // SECOND, time_flow_end_ns=T0 // SECOND),
        goflow2(26, time_flow_start_ns=T0 // 1_000_000, time_flow_end_ns=T0 // 1_000_000),
        goflow2(27, bytes=2**62, sampling_rate=4),
        goflow2(28, src_addr="010.1.0.1"),
    ]
    (root / "goflow2-202110280305.jsonl").write_text("\n".join([*ordinary, *mapped, icmp, *odd]) + "\n")

    env = {"FLOWS_SOURCE": "goflow2", "FLOWS_SOURCE_ROOT": str(root), "FLOWS_COMMUNITY_ID": "true"}
    done = project.materialize_in_process(HOUR, extra_env=env)
    assert done.success, step_failures(done)

    assert [q["reason"].split(" (")[0] for q in quarantine_of(project, HOUR)] == [
        "time_flow_start_ns: 0",
        "time_flow_start_ns: looks like seconds, not nanoseconds",
        "time_flow_start_ns: looks like milliseconds, not nanoseconds",
        "bytes: times sampling_rate exceeds 2^63-1",
        "src_addr: IPv4 with leading zeros",
    ]
    alias = f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of(HOUR).label}"
    assert es_client.count(index=alias)["count"] == 24
    first = es_client.search(index=alias, query={"term": {"event.sequence": 0}})["hits"]["hits"][0]["_source"]
    assert (first["network.bytes"], first["netflow.sampling_interval"], first["network.vlan.id"]) == (1000, 10, 20)
    assert first["source.mac"] == "00-1B-21-3A-4F-5E" and first["network.community_id"].startswith("1:")
    ping = es_client.search(index=alias, query={"term": {"network.transport": "icmp"}})["hits"]["hits"][0]["_source"]
    assert (ping["netflow.icmp_type_ipv4"], ping["netflow.icmp_code_ipv4"]) == (8, 0)
    assert "source.port" not in ping
    v4 = es_client.count(index=alias, query={"term": {"network.type": "ipv4"}})["count"]
    assert v4 == 24  # the mapped flows are IPv4 flows

    # the summary's totals are Elasticsearch's own aggregations of the same hour
    hour = hour_of(HOUR)
    summary = pq.read_table(project.storage / "flow_summary" / f"{hour.start:%Y-%m-%d}" / f"{hour.start:%H}.parquet")
    rows = {(r["kind"], r["key"]): (r["flows"], r["bytes"], r["packets"]) for r in summary.to_pylist()}
    aggs = es_client.search(
        index=alias,
        size=0,
        aggs={
            field: {
                "terms": {"field": field, "size": 100},
                "aggs": {
                    "bytes": {"sum": {"field": "network.bytes"}},
                    "packets": {"sum": {"field": "network.packets"}},
                },
            }
            for field in ("source.ip", "network.transport")
        },
    )["aggregations"]
    for kind, field in (("top_source", "source.ip"), ("transport", "network.transport")):
        expected = {
            (kind, b["key"]): (b["doc_count"], int(b["bytes"]["value"]), int(b["packets"]["value"]))
            for b in aggs[field]["buckets"]
        }
        summarized = {key: value for key, value in rows.items() if key[0] == kind}
        assert summarized == {key: expected[key] for key in summarized}  # top_source keeps the top 20
        assert len(summarized) == min(len(expected), 20)
    assert rows[("top_source", "10.1.0.1")][0] == 4  # 10.1.0.1 and its three mapped flows: one host
