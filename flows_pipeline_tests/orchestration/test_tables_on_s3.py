"""A whole hour with its tables on S3 (the suite's s3proxy) against the real Elasticsearch: the same
counts, documents, quarantine and table bytes as the same hour on local disk; the values its steps
pass each other on S3 too (step_values.py), until the run retention deletes them with the run."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from pathlib import Path

import pyarrow.compute as pc

from flows_pipeline.hour import hour_of
from flows_pipeline.orchestration.resources import FlowsElasticsearch, FlowStorage
from flows_pipeline.orchestration.retention_job import apply_retention
from flows_pipeline.tables import table_store
from flows_pipeline.tables.row_groups import read_batches, verify_digest
from flows_pipeline_tests.orchestration.test_assets_in_process import materialization_of
from flows_pipeline_tests.s3 import OwnS3, stored_files
from flows_pipeline_tests.support import ES_URL, make_project, rows_in, step_failures

PARTITION = "2021-10-28-03:00"
START_NS = 1_635_390_000_000_000_000  # 2021-10-28 03:00:00 UTC
GOOD_FLOWS = 6_000


def goflow2_hour(folder: Path) -> Path:
    """A GoFlow2 file of the hour: GOOD_FLOWS flows, one record unreadable (bytes: not a number), one
    invalid (bytes: negative) and one of the next hour."""
    folder.mkdir()

    def flow(i: int, start_ns: int, nbytes: object) -> str:
        return json.dumps({
            "time_flow_start_ns": start_ns, "time_flow_end_ns": start_ns + 1_000_000,
            "src_addr": f"10.0.{i % 50}.{i % 200}", "dst_addr": f"192.0.2.{i % 7}", "proto": "TCP" if i % 3 else "UDP",
            "src_port": 40_000 + i % 1000, "dst_port": (443, 53, 80)[i % 3], "packets": 1 + i % 5, "bytes": nbytes,
            "sampler_address": "192.0.2.254",
        })  # fmt: skip

    lines = [flow(i, START_NS + i * 500_000_000, 60 + i) for i in range(GOOD_FLOWS)]
    lines += [flow(1, START_NS, "many"), flow(2, START_NS, -80), flow(3, START_NS + 3_700 * 10**9, 80)]
    (folder / "goflow2-202110280305.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_an_hour_on_s3_is_the_same_hour_as_on_local_disk(tmp_path, index_prefix, es_client, own_s3: OwnS3):
    source = goflow2_hour(tmp_path / "goflow2")
    outcomes = {}
    for kind in ("local", "s3"):
        (tmp_path / kind).mkdir()
        project = make_project(tmp_path / kind, f"{index_prefix}-{kind}")
        project.env |= {"FLOWS_SOURCE": "goflow2", "FLOWS_SOURCE_ROOT": str(source)}
        if kind == "s3":
            project.env["FLOWS_STORAGE_ROOT"] = own_s3.new_root()
        with own_s3.environment() if kind == "s3" else contextlib.nullcontext():
            result = project.materialize_in_process(PARTITION, es_bulk_steps=2)
            assert result.success, step_failures(result)
            root = table_store.normalized_root(project.env["FLOWS_STORAGE_ROOT"])
            table = table_store.join(root, "flow_table", "2021-10-28", "03.parquet")
            quarantine = table_store.join(root, "flow_quarantine", "2021-10-28", "03.parquet")
            reasons = sorted(r for b in read_batches(quarantine, columns=["reason"]) for r in b["reason"].to_pylist())
            metadata = materialization_of(result, "flow_table")
            outcomes[kind] = {
                "rows": metadata["rows"].value,
                "quarantined": metadata["quarantined"].value,
                "outside_hour": metadata["outside_hour"].value,
                "sha256": (metadata["sha256"].value, verify_digest(table)),
                "reasons": reasons,
                "documents": rows_in(es_client, f"{index_prefix}-{kind}-2021.10.28-03"),
                "summary_flows": _summary_flows(root),
                "checks": sorted((c.check_name, c.passed) for c in result.get_asset_check_evaluations()),
                "files": [f for f in stored_files(root) if not f.startswith("step_values/")],
            }
            if kind == "s3":
                _assert_step_values_on_s3_until_retention(project, root, result.run_id)
    assert outcomes["s3"] == outcomes["local"]
    local = outcomes["local"]
    assert local["rows"] == GOOD_FLOWS and local["documents"] == (GOOD_FLOWS, 0, GOOD_FLOWS - 1)
    assert local["quarantined"] == 2 and local["outside_hour"] == 1 and local["summary_flows"] == GOOD_FLOWS
    assert all(passed for _, passed in local["checks"])
    assert {"flow_quarantine/2021-10-28/03.parquet", "raw_quarantine/2021-10-28/03.parquet"} <= set(local["files"])


def _assert_step_values_on_s3_until_retention(project, root, run_id: str) -> None:
    """The chunk descriptors and results went through S3, not DAGSTER_HOME; the retention job deletes them
    with the run."""
    values = [f for f in stored_files(root) if f.startswith(f"step_values/{run_id}/")]
    plans = [f for f in values if f.startswith(f"step_values/{run_id}/flow_index.plan_index_chunks/")]
    results = [f for f in values if f.startswith(f"step_values/{run_id}/flow_index.index_chunk[")]
    assert len(plans) == 2 and len(results) == 2, values  # es_bulk_steps=2: two chunks, one value each way
    assert not (project.home / "storage").exists(), "a step value went to DAGSTER_HOME"
    storage = FlowStorage(root=project.env["FLOWS_STORAGE_ROOT"])
    es = FlowsElasticsearch(url=ES_URL, index_prefix=project.env["FLOWS_INDEX_PREFIX"])
    with project.instance() as instance:
        report = apply_retention(instance, storage, es, 1, hour_of(PARTITION).end + timedelta(days=30))
    assert report["dagster_runs_deleted"] == 1
    assert [f for f in stored_files(root) if f.startswith("step_values/")] == []


def _summary_flows(root) -> int:
    summary = table_store.join(root, "flow_summary", "2021-10-28", "03.parquet")
    return sum(pc.sum(b.filter(pc.equal(b["kind"], "transport"))["flows"]).as_py() or 0 for b in read_batches(summary))
