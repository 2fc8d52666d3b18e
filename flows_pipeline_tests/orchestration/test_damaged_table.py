"""A flow table damaged on disk after it was written: nothing is published, the failure names the
file and what to re-materialize, and it is not retried (a retry reads the same bytes)."""

from dagster import DagsterEventType

from flows_pipeline.hour import hour_of
from flows_pipeline_tests.support import step_failures

PARTITION = "2021-10-28-21:00"  # an hour no other test publishes (test_operations backfills 10:00-15:00)


def test_a_damaged_flow_table_is_not_indexed_nor_summarized_and_not_retried(project, es_client):
    project.env |= {"FLOWS_SYNTHETIC_ROWS": "3000", "FLOWS_ROW_GROUP_ROWS": "1000"}
    done = project.materialize_in_process(PARTITION, select="raw_flows,flow_table")
    assert done.success, step_failures(done)
    hour = hour_of(PARTITION)
    table = project.storage / "flow_table" / f"{hour.start:%Y-%m-%d}" / f"{hour.start:%H}.parquet"
    damaged = bytearray(table.read_bytes())
    damaged[len(damaged) // 3] ^= 0xFF  # one byte, footer intact
    table.write_bytes(bytes(damaged))

    for asset in ("flow_index", "flow_summary"):
        failed = project.materialize_in_process(PARTITION, select=asset)
        assert not failed.success
        with project.instance() as instance:
            events = [e.dagster_event for e in instance.all_logs(failed.run_id) if e.dagster_event]
        assert not [e for e in events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
        [failure] = [e for e in events if e.event_type == DagsterEventType.STEP_FAILURE]
        message = failure.step_failure_data.error.message
        assert "CorruptTableError" in message and str(table) in message and "SHA-256" in message
        assert "re-materialize flow_table" in message
    assert not es_client.indices.exists_alias(name=f"{project.env['FLOWS_INDEX_PREFIX']}-{hour.label}")
