"""The pipeline end to end: the `dagster asset materialize` CLI, the multiprocess executor, the real ES."""

import json
import time

import pyarrow.parquet as pq
import pytest
from dagster import DagsterEventType

from flows_pipeline.es.queries import top_talkers
from flows_pipeline.hour import hour_of
from flows_pipeline_tests.support import Project, make_project, max_overlap, rows_in, step_failures

HOUR = "2021-10-28-03:00"


def table_rows(project, hour_key: str) -> list[dict]:
    hour = hour_of(hour_key)
    path = project.storage / "flow_table" / hour.start.strftime("%Y-%m-%d") / f"{hour.start:%H}.parquet"
    return pq.read_table(path).to_pylist()


def hour_alias(project, hour_key: str) -> str:
    return f"{project.env['FLOWS_INDEX_PREFIX']}-{hour_of(hour_key).label}"


@pytest.fixture(scope="module")
def materialized_hour(tmp_path_factory, index_prefix) -> tuple[Project, str]:
    """HOUR materialized once by the CLI, for the tests that read what that run made; its run id."""
    project = make_project(tmp_path_factory.mktemp("materialized_hour"), index_prefix)
    done = project.materialize(HOUR)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return project, project.latest_run_id()


def test_materialized_hour_is_searchable_exactly_once_and_round_trips(materialized_hour, es_client):
    project, run_id = materialized_hour
    rows = table_rows(project, HOUR)
    alias = hour_alias(project, HOUR)
    assert len(rows) == 20_000
    assert es_client.count(index=alias)["count"] == len(rows)
    # several chunks ran, each in its own process (multiprocess executor)
    steps = project.step_intervals(run_id)
    assert len([k for k in steps if k.startswith("flow_index.index_chunk[")]) == 4
    # the blocking checks ran, and passed, in the step that then published the hour
    with project.instance() as instance:
        checks = {
            e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data.passed
            for e in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        }
    assert checks == {
        "documents_match_table": True,
        "no_duplicate_documents": True,
        "every_record_accounted_for": True,
        "summary_agrees_with_index": True,
        "exporters_reporting": True,  # the synthetic hour's exporters, and no earlier hour to miss
        "hour_volume": True,
    }

    for row_number in (0, 7_777, 19_999):
        [hit] = es_client.search(index=alias, query={"term": {"event.sequence": row_number}})["hits"]["hits"]
        source = hit["_source"]
        row = rows[row_number]
        assert source["source.ip"] == row["source.ip"]
        assert source["destination.ip"] == row["destination.ip"]
        assert source["network.bytes"] == row["network.bytes"]
        assert source["@timestamp"] == row["@timestamp"].isoformat(timespec="milliseconds").replace("+00:00", "Z")
    # the ip and date mappings answer range queries on the original values
    first = rows[0]
    hits = es_client.count(
        index=alias,
        query={"bool": {"filter": [
            {"term": {"source.ip": first["source.ip"]}},
            {"term": {"@timestamp": first["@timestamp"].isoformat()}},
            {"term": {"network.bytes": first["network.bytes"]}},
        ]}},
    )["count"]  # fmt: skip
    assert hits >= 1
    # the read alias over all hours sees the hour too
    assert es_client.count(index=project.env["FLOWS_INDEX_PREFIX"])["count"] >= len(rows)


def test_flow_summary_agrees_with_the_flow_index(materialized_hour, es_client):
    project, _ = materialized_hour
    prefix = project.env["FLOWS_INDEX_PREFIX"]
    summary = {
        (hit["_source"]["kind"], hit["_source"]["rank"]): hit["_source"]
        for hit in es_client.search(index=f"summary-{prefix}", query={"term": {"hour": HOUR}}, size=500)["hits"]["hits"]
    }
    transports = [doc for (kind, _), doc in summary.items() if kind == "transport"]
    assert sum(doc["flows"] for doc in transports) == 20_000
    minutes = [doc for (kind, _), doc in summary.items() if kind == "minute"]
    assert len(minutes) == 60 and sum(doc["flows"] for doc in minutes) == 20_000

    alias = hour_alias(project, HOUR)
    top = top_talkers(es_client, alias, size=1)[0]
    assert (summary[("top_source", 1)]["key"], summary[("top_source", 1)]["bytes"]) == top
    # re-materializing replaces the hour's summary documents, it does not add to them
    assert project.materialize(HOUR, select="flow_summary").returncode == 0
    es_client.indices.refresh(index=f"summary-{prefix}")
    assert es_client.count(index=f"summary-{prefix}", query={"term": {"hour": HOUR}})["count"] == len(summary)


def bucket_of(alias: str) -> str:
    """The day bucket of an hour alias: flowsX-2021.10.28-04 -> flowsX-day-2021.10.28."""
    prefix, day, _ = alias.rsplit("-", 2)
    return f"{prefix}-day-{day}"


def attempt_aliases(es_client, alias: str) -> set[str]:
    return set(es_client.indices.get_alias(name=f"{alias}-*", expand_wildcards="all")[bucket_of(alias)]["aliases"])


def test_rematerializing_an_hour_replaces_it_without_duplicates_or_leftovers(project, es_client):
    alias = hour_alias(project, "2021-10-28-04:00")
    first = project.materialize_in_process("2021-10-28-04:00")  # the load the CLI's re-run replaces
    assert first.success, step_failures(first)
    first_attempts = attempt_aliases(es_client, alias)
    done = project.materialize("2021-10-28-04:00")
    assert done.returncode == 0, done.stdout[-3000:]

    second_attempts = attempt_aliases(es_client, alias)
    assert len(first_attempts) == len(second_attempts) == 1 and first_attempts != second_attempts  # the old one is gone
    assert rows_in(es_client, alias) == (20_000, 0, 19_999)  # each row of the hour exactly once
    es_client.indices.refresh(index=bucket_of(alias))
    in_the_hour = {"range": {"@timestamp": {"gte": "2021-10-28T04:00:00Z", "lt": "2021-10-28T05:00:00Z"}}}
    # other hours of the day share the bucket; of this hour, only the published load's documents are left
    assert es_client.count(index=bucket_of(alias), query=in_the_hour)["count"] == 20_000


@pytest.mark.parametrize("max_concurrent", [1, 3])
def test_max_concurrent_limits_the_steps_of_a_run(project, es_client, max_concurrent):
    config = {"execution": {"config": {"max_concurrent": max_concurrent, "es_bulk_steps": 1}}}
    done = project.materialize("2021-10-28-07:00", config_json=json.dumps(config))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    steps = project.step_intervals(project.latest_run_id())
    chunk_steps = [v for k, v in steps.items() if k.startswith("flow_index.index_chunk[")]
    assert len(chunk_steps) == 4
    assert max_overlap(steps.values()) <= max_concurrent
    assert max_overlap(chunk_steps) == 1  # es_bulk_steps: 1
    assert es_client.count(index=hour_alias(project, "2021-10-28-07:00"))["count"] == 20_000


def test_run_fails_fast_and_clearly_when_elasticsearch_is_down(project):
    started = time.monotonic()
    done = project.materialize("2021-10-28-08:00", extra_env={"ES_URL": "http://127.0.0.1:9"})
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Elasticsearch at http://127.0.0.1:9 is unreachable" in output
    assert "make es-up" in output
    assert time.monotonic() - started < 90  # CLI start-up and the table steps included


def test_unknown_partition_is_refused_by_the_cli(project):
    done = project.materialize("2021-10-28-03:30")
    assert done.returncode != 0
    assert "2021-10-28-03:30" in done.stdout + done.stderr


def test_an_hour_gets_one_chunk_per_chunk_step_the_run_executes_at_once(project, es_client):
    config = {"execution": {"config": {"max_concurrent": 4, "es_bulk_steps": 3}}}
    done = project.materialize(
        "2021-10-28-08:00", config_json=json.dumps(config), extra_env={"FLOWS_MAX_ROW_GROUPS_PER_CHUNK": "32"}
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    steps = project.step_intervals(project.latest_run_id())
    # 8 row groups of 2,500 rows, 3 steps at once: chunks of 3, 3 and 2 row groups
    chunk_keys = sorted(k for k in steps if k.startswith("flow_index.index_chunk["))
    assert chunk_keys == [
        "flow_index.index_chunk[rows_000000000_000007500]",
        "flow_index.index_chunk[rows_000007500_000015000]",
        "flow_index.index_chunk[rows_000015000_000020000]",
    ]
    assert es_client.count(index=hour_alias(project, "2021-10-28-08:00"))["count"] == 20_000
