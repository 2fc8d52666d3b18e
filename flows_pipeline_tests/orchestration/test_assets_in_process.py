"""raw_flows and flow_table materialized in process with Dagster's `materialize`: no CLI, no node."""

from pathlib import Path

import pyarrow.parquet as pq
from dagster import DagsterEventType, materialize

from flows_pipeline.orchestration.assets.flow_table import flow_table
from flows_pipeline.orchestration.assets.raw_flows import raw_flows
from flows_pipeline.orchestration.resources import FlowSource, FlowStorage

PARTITION = "2021-10-28-03:00"


def test_an_hour_of_synthetic_flows_becomes_raw_flows_and_a_balanced_flow_table(tmp_path: Path):
    storage = FlowStorage(root=str(tmp_path), row_group_rows=1_000)
    result = materialize(
        [raw_flows, flow_table],
        resources={"storage": storage, "source": FlowSource(synthetic_rows_per_hour=5_000)},
        partition_key=PARTITION,
    )

    assert result.success
    raw = result.asset_materializations_for_node("raw_flows")[0].metadata
    table = result.asset_materializations_for_node("flow_table")[0].metadata
    assert raw["rows"].value == 5_000
    assert table["records_read"].value == 5_000
    assert table["rows"].value + table["quarantined"].value + table["outside_hour"].value == 5_000
    assert (
        pq.ParquetFile(tmp_path / "flow_table" / "2021-10-28" / "03.parquet").metadata.num_rows == table["rows"].value
    )
    # what the UI shows: row counts and column schemas with a description per column
    assert table["dagster/row_count"].value == table["rows"].value
    columns = {c.name: c.description for c in table["dagster/column_schema"].schema.columns}
    assert columns["network.bytes"].startswith("Bytes of the flow") and len(columns) >= 16
    assert raw["dagster/row_count"].value == 5_000
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "every_record_accounted_for" and check.passed


def test_a_wrong_source_setting_fails_the_step_once_naming_the_setting(tmp_path: Path):
    result = materialize(
        [raw_flows],
        resources={"storage": FlowStorage(root=str(tmp_path)), "source": FlowSource(kind="goflow2")},
        partition_key=PARTITION,
        raise_on_error=False,
    )

    assert not result.success
    failures = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert len(failures) == 1
    error = failures[0].step_failure_data.error
    assert "ConfigurationError" in error.message and "FLOWS_SOURCE_ROOT" in error.message
    assert error.cause is not None and error.cause.cls_name == "ConfigurationError"


def test_an_exporter_writing_seconds_is_read_correctly_once_the_source_says_so(tmp_path: Path):
    """The time-units kind: the same file quarantined as "looks like seconds" under GoFlow2's
    nanoseconds, and read as flows of the hour with FLOWS_SOURCE_TIME_UNIT=s."""
    root = tmp_path / "goflow2"
    root.mkdir()
    start = 1_635_390_000  # 2021-10-28 03:00:00 UTC, in seconds
    (root / "goflow2-202110280305.jsonl").write_text(
        "".join(
            f'{{"time_flow_start_ns": {start + i}, "time_flow_end_ns": {start + i + 1}, "src_addr": "10.0.0.{i}", '
            f'"dst_addr": "192.0.2.1", "proto": "UDP", "src_port": 5000, "dst_port": 53, "bytes": 80, "packets": 1}}\n'
            for i in range(1, 4)
        )
    )
    outcomes = {}
    for unit in ("ns", "s"):
        storage = FlowStorage(root=str(tmp_path / unit))
        source = FlowSource(kind="goflow2", root=str(root), time_unit=unit)
        result = materialize(
            [raw_flows, flow_table], resources={"storage": storage, "source": source}, partition_key=PARTITION
        )
        table = result.asset_materializations_for_node("flow_table")[0].metadata
        quarantine = pq.read_table(tmp_path / unit / "flow_quarantine" / "2021-10-28" / "03.parquet")
        reasons = {reason.split(" (")[0] for reason in quarantine.column("reason").to_pylist()}
        outcomes[unit] = (table["rows"].value, table["outside_hour"].value, reasons)
    assert outcomes == {
        "ns": (0, 0, {"time_flow_start_ns: looks like seconds, not nanoseconds"}),
        "s": (3, 0, set()),
    }


def materialization_of(result, asset: str):
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return event.materialization.metadata


def test_the_quarantine_is_an_asset_of_its_own_with_its_records_counted_by_reason(tmp_path: Path):
    """One record the reader cannot read (bytes: not a number), one invalid flow (bytes: negative),
    one good flow: flow_quarantine reports both, by reason, and which were rejected on read."""
    root = tmp_path / "goflow2"
    root.mkdir()
    start = 1_635_390_000_000_000_000  # 2021-10-28 03:00:00 UTC, in nanoseconds
    flow = '"time_flow_start_ns": {t}, "time_flow_end_ns": {t}, "src_addr": "10.0.0.1", "dst_addr": "192.0.2.1", '
    flow += '"proto": "UDP", "src_port": 5000, "dst_port": 53, "packets": 1, "bytes": {b}'
    lines = [flow.format(t=start + i, b=b) for i, b in enumerate(('"many"', "-80", "80"))]
    (root / "goflow2-202110280305.jsonl").write_text("".join(f"{{{line}}}\n" for line in lines))

    storage = FlowStorage(root=str(tmp_path / "data"))
    source = FlowSource(kind="goflow2", root=str(root))
    assets = [raw_flows, flow_table]
    result = materialize(assets, resources={"storage": storage, "source": source}, partition_key=PARTITION)

    quarantine = materialization_of(result, "flow_quarantine")
    assert quarantine["dagster/row_count"].value == 2
    assert quarantine["rejected_on_read"].value == 1 and quarantine["invalid_flows"].value == 1
    assert quarantine["records_by_reason"].value == {"bytes: not a number": 1, "bytes: negative": 1}
    assert "| bytes: negative | 1 |" in quarantine["reasons"].value
    assert {c.name for c in quarantine["dagster/column_schema"].schema.columns} == {
        "reason", "source", "source_row", "raw_record",
    }  # fmt: skip
    assert materialization_of(result, "flow_table")["dagster/row_count"].value == 1

    # `--select flow_table` alone still works; the step writes both tables, so it records both
    only_table = materialize(
        assets,
        selection="flow_table",
        resources={"storage": storage, "source": source},
        partition_key=PARTITION,
    )
    recorded = {e.asset_key.to_user_string() for e in only_table.all_events if e.is_step_materialization}
    assert recorded == {"flow_table", "flow_quarantine"}
    assert [c.check_name for c in only_table.get_asset_check_evaluations()] == ["every_record_accounted_for"]
