"""Terminal refusals end a step at its first attempt; transient ones are retried until they clear.

The cluster's answers are injected by the fault proxy in front of the real node, on the bulk
requests of a real run of the assets, in process: the retry decisions (the step's RetryPolicy, a
Failure that allows no retries) are Dagster's step execution's, the same in every executor
(a step killed with its process is test_chunk_retry's case, through the CLI).
"""

import pytest
from dagster import DagsterEventType
from dagster._core.storage.tags import WILL_RETRY_TAG

from flows_pipeline.hour import hour_of
from flows_pipeline.orchestration.failures import FAILURE_KIND_TAG
from flows_pipeline_tests.fault_proxy import FaultProxy
from flows_pipeline_tests.support import ES_URL, free_port, step_failures

PARTITION = "2021-10-28-20:00"  # an hour no other test publishes (test_operations backfills 10-17)


def step_events(project, run_id: str, prefix: str) -> list:
    with project.instance() as instance:
        events = [e.dagster_event for e in instance.all_logs(run_id) if e.dagster_event]
    return [e for e in events if e.step_key and e.step_key.startswith(prefix)]


@pytest.fixture
def hour_with_a_table(project):
    """A project whose hour already has its flow table (built without the node)."""
    # one body in flight: the first request the proxy answers is always the chunk's first body
    project.env |= {
        "FLOWS_SYNTHETIC_ROWS": "3000",
        "FLOWS_ROW_GROUP_ROWS": "1000",
        "FLOWS_BULK_MAX_DOCS": "500",
        "FLOWS_BULK_IN_FLIGHT": "1",
    }
    done = project.materialize_in_process(PARTITION, select="raw_flows,flow_table")
    assert done.success, step_failures(done)
    return project


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, "illegal_argument_exception: injected: the request is malformed"),
        (403, "security_exception: action [indices:data/write/bulk] is unauthorized for user [flows_loader]"),
    ],
)
def test_a_terminal_refusal_is_sent_once_and_fails_the_step_at_once(hour_with_a_table, es_client, status, reason):
    project = hour_with_a_table
    with FaultProxy(ES_URL, "/_bulk", [status]) as proxy:
        done = project.materialize_in_process(
            PARTITION, select="flow_index", extra_env={"ES_URL": proxy.url}, es_bulk_steps=1
        )

    assert not done.success
    assert proxy.injected == [status]
    first_ids = proxy.ids[0]
    assert sum(ids == first_ids for ids in proxy.ids) == 1, "the refused body was sent again"
    chunks = step_events(project, done.run_id, "flow_index.index_chunk[")
    starts = [e for e in chunks if e.event_type == DagsterEventType.STEP_START]
    assert len(starts) == len({e.step_key for e in starts}), "a chunk step was attempted twice"
    assert not [e for e in chunks if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    [failure] = [e for e in chunks if e.event_type == DagsterEventType.STEP_FAILURE]
    message = failure.step_failure_data.error.message
    assert "ClusterRefusedError" in message and f"HTTP {status} {reason}" in message
    assert "on its first attempt" in message and "rows 0-499" in message
    alias = f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of(PARTITION).label}"
    assert not es_client.indices.exists_alias(name=alias)
    # and the daemon's run retries (dagster.yaml) leave the run alone: it would fail the same way
    assert run_tags(project, done.run_id).items() >= {FAILURE_KIND_TAG: "terminal", WILL_RETRY_TAG: "false"}.items()


def test_a_transient_failure_that_outlasts_the_step_lets_the_daemon_retry_the_run(hour_with_a_table):
    project = hour_with_a_table
    done = project.materialize_in_process(
        PARTITION, select="flow_index", extra_env={"ES_URL": f"http://127.0.0.1:{free_port()}"}, es_bulk_steps=1
    )

    assert not done.success
    assert "ClusterUnavailableError" in step_failures(done) or "unreachable" in step_failures(done).lower()
    # dagster.yaml's run_retries: retry_on_asset_or_op_failure false, so only this tag lets it retry
    assert run_tags(project, done.run_id).items() >= {FAILURE_KIND_TAG: "transient", WILL_RETRY_TAG: "true"}.items()


def run_tags(project, run_id: str) -> dict[str, str]:
    with project.instance() as instance:
        return dict(instance.get_run_by_id(run_id).tags)


def test_a_503_is_retried_and_the_hour_loads_exactly_when_it_clears(hour_with_a_table, es_client):
    project = hour_with_a_table
    with FaultProxy(ES_URL, "/_bulk", [503, 503]) as proxy:
        done = project.materialize_in_process(
            PARTITION, select="flow_index", extra_env={"ES_URL": proxy.url}, es_bulk_steps=1
        )

    assert done.success, step_failures(done)
    assert proxy.injected == [503, 503]
    assert proxy.ids[0] == proxy.ids[1] == proxy.ids[2]  # the first body: answered 503 twice, then sent again
    assert proxy.ids.count(proxy.ids[0]) == 3
    alias = f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of(PARTITION).label}"
    es_client.indices.refresh(index=alias)
    assert es_client.count(index=alias)["count"] == 3000
