"""The index layout over a season, against the real node: buckets of days or weeks, hours published
atomically through filtered aliases, concurrent runs, the upgrade from hourly indices."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import orjson
import pytest
from elasticsearch import Elasticsearch

from flows_pipeline.es.bulk_encoding import BulkBody
from flows_pipeline.es.bulk_sender import BulkSender
from flows_pipeline.es.cluster_errors import ClusterRefusedError
from flows_pipeline.es.connection import connect
from flows_pipeline.es.index_layout import IndexLayout
from flows_pipeline.es.index_lifecycle import (
    AttemptReplacedError,
    LoadAttempt,
    bucket_mappings,
    bucket_settings,
    prepare_load,
    publish,
    published_index,
)
from flows_pipeline.es.replaced_attempts import delete_replaced, has_delete_by_query
from flows_pipeline.hour import Hour, hour_of
from flows_pipeline_tests.fault_proxy import FaultProxy
from flows_pipeline_tests.support import ES_URL, bulk_retry, connection_settings, index_layout

ROWS = 5


def write(client: Elasticsearch, attempt: LoadAttempt, hour: Hour, rows: range, value: int) -> int:
    """Documents of the given rows through the attempt's alias (network.bytes = value); how many were refused."""
    lines = b"".join(
        b'{"index":{"_id":"%s%d"}}\n{"flows.attempt":"%s","event.sequence":%d,"@timestamp":%d,"network.bytes":%d}\n'
        % (attempt.id_prefix.encode(), row, attempt.token.encode(), row, hour.start_ms + row, value)
        for row in rows
    )
    sender = BulkSender(client, attempt.alias, 1, bulk_retry(0), require_alias=True)
    return sender.send(BulkBody(rows.start, len(rows), lines)).failed


def load(client, layout: IndexLayout, hour: Hour, run_id: str, value: int = 1, rows: int = ROWS) -> LoadAttempt:
    attempt = prepare_load(client, layout, ES_URL, hour, run_id, now_ms=time.time_ns() // 1_000_000)
    assert write(client, attempt, hour, range(rows), value) == 0
    return attempt


def load_and_publish(client, layout: IndexLayout, hour: Hour, run_id: str, value: int = 1, rows: int = ROWS):
    attempt = load(client, layout, hour, run_id, value, rows)
    published = publish(client, layout, hour, attempt, expected_docs=rows, rows=rows)
    assert published.verification.passed, published.verification
    delete_replaced(client, published.replaced)
    return attempt


def total_bytes(client: Elasticsearch, target: str) -> tuple[int, int]:
    """(documents, sum of network.bytes) through an alias or pattern."""
    response = client.search(
        index=target, size=0, track_total_hits=True, aggs={"b": {"sum": {"field": "network.bytes"}}}
    )
    return response["hits"]["total"]["value"], int(response["aggregations"]["b"]["value"])


@contextmanager
def max_shards_per_node(client: Elasticsearch, limit: int) -> Iterator[None]:
    client.cluster.put_settings(persistent={"cluster.max_shards_per_node": limit})
    try:
        yield
    finally:
        client.cluster.put_settings(persistent={"cluster.max_shards_per_node": None})


def open_shards(client: Elasticsearch) -> int:
    health = client.cluster.health()
    return health["active_shards"] + health["initializing_shards"] + health["unassigned_shards"]


def prefix_shards(client: Elasticsearch, prefix: str) -> int:
    indices = client.cat.indices(index=f"{prefix}*", expand_wildcards="all", format="json", h="index,pri,rep")
    return sum(int(i["pri"]) * (1 + int(i["rep"])) for i in indices)


def test_a_season_of_hours_fits_in_a_few_shards_and_every_hour_counts_exactly(es_client, index_prefix):
    layout = index_layout(f"{index_prefix}-season", bucket="week")
    first = hour_of("2021-10-28-00:00").start
    hours = [Hour(first + timedelta(days=d, hours=h)) for d in range(60) for h in (3, 15)]
    hours += [Hour(first + timedelta(days=30, hours=h)) for h in range(24) if h not in (3, 15)]
    weeks = 10  # 60 days from a Thursday touch 10 ISO weeks
    with max_shards_per_node(es_client, open_shards(es_client) + weeks + 2):
        for i, hour in enumerate(hours):
            load_and_publish(es_client, layout, hour, f"run{i:05d}")

    assert prefix_shards(es_client, layout.prefix) <= weeks + 1  # the buckets and the publication lock
    for hour in hours:
        assert es_client.count(index=layout.hour_alias(hour))["count"] == ROWS
    assert es_client.count(index=layout.read_alias)["count"] == ROWS * len(hours)
    assert es_client.count(index=f"{layout.prefix}-*")["count"] == ROWS * len(hours)


def test_a_new_bucket_is_refused_before_anything_is_created_when_the_cluster_has_no_shard_room(es_client, index_prefix):
    layout = index_layout(f"{index_prefix}-full")
    hour = hour_of("2021-10-28-05:00")
    with max_shards_per_node(es_client, open_shards(es_client)), pytest.raises(ClusterRefusedError) as refused:
        prepare_load(es_client, layout, ES_URL, hour, "fullrun0", now_ms=1)
    message = str(refused.value)
    assert (
        "this index needs 1 more" in message
        and "cluster.max_shards_per_node" in message
        and "FLOWS_RETENTION_DAYS" in message
    )
    assert not es_client.indices.exists(index=layout.bucket_index(hour), expand_wildcards="all")


def test_replicas_that_cannot_be_placed_are_refused_before_anything_is_created(es_client, index_prefix):
    layout = IndexLayout(prefix=f"{index_prefix}-repl", bucket="day", shards=1, replicas=1)
    hour = hour_of("2021-10-28-05:00")
    with pytest.raises(
        ClusterRefusedError, match=r"1 data node\(s\).*replicas cannot be assigned.*Lower FLOWS_INDEX_REPLICAS to 0"
    ):
        prepare_load(es_client, layout, ES_URL, hour, "replrun0", now_ms=1)
    assert not es_client.indices.exists(index=layout.bucket_index(hour), expand_wildcards="all")


def test_a_rerun_publishes_with_one_aliases_request_and_searches_never_see_a_mix(es_client, index_prefix, monkeypatch):
    monkeypatch.setattr("flows_pipeline.es.replaced_attempts.DELETE_BATCH", 300)  # 7 bodies of deletes
    layout = index_layout(f"{index_prefix}-rerun")
    hour = hour_of("2021-10-28-06:00")
    rows = 2_000
    load_and_publish(es_client, layout, hour, "old00000", value=1, rows=rows)
    seen: set[tuple[int, int]] = set()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.add(total_bytes(es_client, layout.hour_alias(hour)))
            seen.add(total_bytes(es_client, layout.read_alias))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        attempt = load(es_client, layout, hour, "new00000", value=2, rows=rows)
        with FaultProxy(ES_URL, "/_aliases", []) as proxy:
            published = publish(connect(connection_settings(proxy.url)), layout, hour, attempt, rows, rows)
        with FaultProxy(ES_URL, "/_bulk", [], hold_s=0.5) as deletes:  # held: bodies sent at once overlap
            deletion = delete_replaced(connect(connection_settings(deletes.url)), published.replaced, in_flight=3)
        time.sleep(0.5)
    finally:
        stop.set()
        sampler.join()

    assert len(proxy.ids) == 1  # the publication's one _aliases request
    # this node (the integ-test-zip) has no reindex module: bulk deletes by id, 3 of 7 bodies at once
    assert not has_delete_by_query(es_client)
    assert (deletion.deleted, deletion.left, deletion.method) == (rows, 0, "bulk by id")
    assert len(deletes.ids) == 7 and deletes.peak_in_flight == 3
    assert seen <= {(rows, rows * 1), (rows, rows * 2)} and (rows, rows * 2) in seen
    assert total_bytes(es_client, layout.hour_alias(hour)) == (rows, rows * 2)
    es_client.indices.refresh(index=attempt.bucket)
    assert es_client.count(index=attempt.bucket)["count"] == rows  # the old attempt's documents are gone


def test_a_delete_body_the_cluster_refuses_is_told_and_the_others_still_go(es_client, index_prefix, monkeypatch):
    monkeypatch.setattr("flows_pipeline.es.replaced_attempts.DELETE_BATCH", 400)
    layout = index_layout(f"{index_prefix}-refused")
    hour = hour_of("2021-10-28-08:00")
    rows = 2_000
    load_and_publish(es_client, layout, hour, "old00000", rows=rows)
    attempt = load(es_client, layout, hour, "new00000", rows=rows)
    published = publish(es_client, layout, hour, attempt, rows, rows)
    with FaultProxy(ES_URL, "/_bulk", [429]) as deletes:
        deletion = delete_replaced(connect(connection_settings(deletes.url)), published.replaced, in_flight=2)
    assert deletes.injected == [429] and len(deletes.ids) == 5
    assert (deletion.deleted, deletion.left) == (rows - 400, 400)
    assert "es_rejected_execution_exception" in deletion.problems[0]
    assert total_bytes(es_client, layout.hour_alias(hour)) == (rows, rows)  # the published hour is whole
    es_client.indices.refresh(index=attempt.bucket)
    assert es_client.count(index=attempt.bucket)["count"] == rows + 400  # the refused body's: invisible, counted


def test_two_runs_of_one_hour_at_once_end_exact_and_nothing_is_auto_created(es_client, index_prefix):
    layout = index_layout(f"{index_prefix}-race")
    hour = hour_of("2021-10-28-07:00")
    rows = 100
    first = prepare_load(es_client, layout, ES_URL, hour, "firstrun", now_ms=time.time_ns() // 1_000_000)
    assert write(es_client, first, hour, range(50), value=1) == 0  # the first run is half-way
    second = load(es_client, layout, hour, "secondrn", value=2, rows=rows)
    published = publish(es_client, layout, hour, second, rows, rows)  # the later run publishes first
    assert published.verification.passed

    refused = write(es_client, first, hour, range(50, rows), value=1)  # the first run goes on
    with pytest.raises(AttemptReplacedError, match="a later run of this hour published"):
        publish(es_client, layout, hour, first, rows, rows)
    delete_replaced(es_client, published.replaced)

    assert refused == 50  # its alias is gone: refused, never auto-created
    assert total_bytes(es_client, layout.hour_alias(hour)) == (rows, rows * 2)
    assert total_bytes(es_client, f"{layout.prefix}-*") == (rows, rows * 2)
    indices = set(es_client.indices.get(index=f"{layout.prefix}*", expand_wildcards="all"))
    assert indices == {layout.bucket_index(hour), layout.lock_index}
    es_client.indices.refresh(index=second.bucket)
    assert es_client.count(index=second.bucket)["count"] == rows


def test_a_later_run_still_loading_is_not_touched_by_an_earlier_runs_publication(es_client, index_prefix):
    layout = index_layout(f"{index_prefix}-later")
    hour = hour_of("2021-10-28-08:00")
    earlier = load(es_client, layout, hour, "earlier0", value=1)
    later = prepare_load(es_client, layout, ES_URL, hour, "later000", now_ms=time.time_ns() // 1_000_000 + 1)
    assert publish(es_client, layout, hour, earlier, ROWS, ROWS).verification.passed
    assert write(es_client, later, hour, range(ROWS), value=3) == 0  # still writable
    published = publish(es_client, layout, hour, later, ROWS, ROWS)
    delete_replaced(es_client, published.replaced)
    assert [token for _, token in published.replaced] == [earlier.token]
    assert total_bytes(es_client, layout.read_alias) == (ROWS, ROWS * 3)


def test_hours_of_one_day_publishing_at_once_are_all_visible(es_client, index_prefix):
    layout = index_layout(f"{index_prefix}-day")
    hours = [hour_of(f"2021-10-28-{h:02d}:00") for h in range(10, 18)]
    attempts = [load(es_client, layout, hour, f"par{h:05d}") for h, hour in enumerate(hours)]
    errors: list[BaseException] = []

    def publish_one(hour: Hour, attempt: LoadAttempt) -> None:
        try:
            assert publish(connect(connection_settings()), layout, hour, attempt, ROWS, ROWS).verification.passed
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=publish_one, args=pair) for pair in zip(hours, attempts, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert es_client.count(index=layout.read_alias)["count"] == ROWS * len(hours)
    for hour in hours:
        assert es_client.count(index=layout.hour_alias(hour))["count"] == ROWS


OLD_PROPERTIES = {"network": {"properties": {"bytes": {"type": "long"}}}}


def make_hourly_index(client: Elasticsearch, layout: IndexLayout, hour: Hour, run: str, publish_it: bool) -> str:
    """An hour's index as the hourly layout made it: `<prefix>-YYYY.MM.DD-HH-<run>`, ids = row numbers,
    the hour alias and the (unfiltered) read alias on it once published, hidden until then."""
    index = f"{layout.hour_alias(hour)}-{run}"
    client.indices.put_index_template(
        name=layout.legacy_template,
        index_patterns=[f"{layout.prefix}-*"],
        priority=100,
        template={
            "mappings": {"dynamic": "strict", "properties": {"network": {"properties": {"bytes": {"type": "long"}}}}}
        },
    )
    client.indices.create(index=index, settings={"index": {"hidden": not publish_it, "number_of_replicas": 0}})
    body = b"".join(b'{"index":{"_id":"%d"}}\n{"network.bytes":7}\n' % row for row in range(ROWS))
    client.bulk(index=index, operations=body, refresh=True)
    if publish_it:
        client.indices.update_aliases(
            actions=[
                {"add": {"index": index, "alias": layout.hour_alias(hour)}},
                {"add": {"index": index, "alias": layout.read_alias}},
            ]
        )
    return index


def test_hours_of_the_hourly_layout_stay_searchable_and_a_rerun_moves_them_into_a_bucket(es_client, index_prefix):
    layout = index_layout(f"{index_prefix}-upgrade")
    old_hour, new_hour = hour_of("2021-10-28-03:00"), hour_of("2021-10-28-04:00")
    legacy = make_hourly_index(es_client, layout, old_hour, "legacy00", publish_it=True)
    failed = make_hourly_index(es_client, layout, old_hour, "failed00", publish_it=False)

    load_and_publish(es_client, layout, new_hour, "upgrade0", value=1)
    assert not es_client.indices.exists_index_template(name=layout.legacy_template)  # removed with the first bucket
    assert total_bytes(es_client, layout.read_alias) == (2 * ROWS, ROWS * 7 + ROWS)
    assert total_bytes(es_client, layout.hour_alias(old_hour)) == (ROWS, ROWS * 7)
    assert total_bytes(es_client, f"{layout.prefix}-*")[0] == 2 * ROWS

    rerun = load_and_publish(es_client, layout, old_hour, "upgrade1", value=2)
    assert published_index(es_client, layout, old_hour) == rerun.bucket
    assert not es_client.indices.exists(index=legacy, expand_wildcards="all")
    assert not es_client.indices.exists(index=failed, expand_wildcards="all")
    assert total_bytes(es_client, layout.read_alias) == (2 * ROWS, ROWS * 2 + ROWS)


def test_changing_the_bucket_span_never_leaves_two_copies_of_an_hour(es_client, index_prefix):
    days = index_layout(f"{index_prefix}-span", bucket="day")
    weeks = index_layout(f"{index_prefix}-span", bucket="week")
    hour, other = hour_of("2021-10-28-03:00"), hour_of("2021-10-28-04:00")
    load_and_publish(es_client, days, hour, "dayrun00", value=1)
    load_and_publish(es_client, days, other, "dayrun01", value=1)

    load_and_publish(es_client, weeks, hour, "weekrun0", value=5)

    assert published_index(es_client, weeks, hour) == weeks.bucket_index(hour)
    assert total_bytes(es_client, weeks.hour_alias(hour)) == (ROWS, ROWS * 5)
    assert total_bytes(es_client, weeks.read_alias) == (2 * ROWS, ROWS * 5 + ROWS)
    assert total_bytes(es_client, f"{weeks.prefix}-*") == (2 * ROWS, ROWS * 5 + ROWS)


def test_a_site_template_cannot_change_the_flow_mapping(es_client, index_prefix):
    layout = index_layout(f"{index_prefix}-tmpl")
    es_client.indices.put_index_template(
        name=f"{layout.prefix}-site",
        index_patterns=[f"{layout.prefix}-*"],
        priority=500,
        template={"mappings": {"dynamic": True, "properties": {"source": {"properties": {"ip": {"type": "keyword"}}}}}},
    )
    try:
        attempt = load_and_publish(es_client, layout, hour_of("2021-10-28-03:00"), "tmplrun0")
        mapping = es_client.indices.get_mapping(index=attempt.bucket, expand_wildcards="all")[attempt.bucket]
        assert mapping["mappings"]["properties"]["source"]["properties"]["ip"]["type"] == "ip"
        assert mapping["mappings"]["dynamic"] == "strict"

        # a runtime field still shadows the indexed one: refused, naming the template
        es_client.indices.put_index_template(
            name=f"{layout.prefix}-site",
            index_patterns=[f"{layout.prefix}-*"],
            priority=500,
            template={"mappings": {"runtime": {"source.ip": {"type": "keyword"}}}},
        )
        with pytest.raises(ClusterRefusedError, match=rf"runtime field source.ip.*'{layout.prefix}-site'"):
            prepare_load(es_client, layout, ES_URL, hour_of("2021-10-29-03:00"), "tmplrun1", now_ms=1)
    finally:
        es_client.indices.delete_index_template(name=f"{layout.prefix}-site")


def test_a_bucket_made_before_the_side_counters_gets_them_and_loads(es_client, index_prefix):
    layout = index_layout(f"{index_prefix}-older")
    hour = hour_of("2021-10-28-03:00")
    older = bucket_mappings()
    for side in ("source", "destination"):  # as an earlier version created it: no source.bytes and kin
        for counter in ("bytes", "packets"):
            del older["properties"][side]["properties"][counter]
    es_client.indices.create(index=layout.bucket_index(hour), settings=bucket_settings(layout), mappings=older)
    attempt = prepare_load(es_client, layout, ES_URL, hour, "olderrun", now_ms=time.time_ns() // 1_000_000)
    fields = es_client.indices.get_mapping(index=attempt.bucket, expand_wildcards="all")[attempt.bucket]["mappings"]
    assert fields["properties"]["destination"]["properties"]["bytes"] == {"type": "long"}
    assert fields["dynamic"] == "strict"
    document = {"flows.attempt": attempt.token, "event.sequence": 0, "@timestamp": hour.start_ms, "source.bytes": 9}
    body = b'{"index":{"_id":"%s0"}}\n' % attempt.id_prefix.encode() + orjson.dumps(document) + b"\n"
    sender = BulkSender(es_client, attempt.alias, 1, bulk_retry(0), require_alias=True)
    assert sender.send(BulkBody(0, 1, body)).failed == 0  # strict mapping: refused without the new field
