"""Connection checks and bulk accounting against the real Elasticsearch."""

import time

import pytest

from flows_pipeline.es.bulk_encoding import BulkBody
from flows_pipeline.es.bulk_sender import BulkSender
from flows_pipeline.es.cluster_errors import ClusterRefusedError, ClusterUnavailableError
from flows_pipeline.es.connection import check_major, connect
from flows_pipeline_tests.fault_proxy import FaultProxy
from flows_pipeline_tests.support import ES_URL, bulk_retry, connection_settings, flow_test_index


def numbered_body(first: int, count: int) -> BulkBody:
    """Documents with ids first..first+count-1, each holding its id as network.bytes."""
    ids = range(first, first + count)
    return BulkBody(first, count, b"".join(b'{"index":{"_id":"%d"}}\n{"network.bytes":%d}\n' % (i, i) for i in ids))


def test_unreachable_cluster_fails_within_seconds_naming_the_url_and_the_fix():
    started = time.monotonic()
    with pytest.raises(ClusterUnavailableError) as failure:
        connect(connection_settings("http://user:secret@127.0.0.1:9"))
    assert time.monotonic() - started < 10
    message = str(failure.value)
    assert "http://127.0.0.1:9" in message and "make es-up" in message
    assert "secret" not in message


def test_wrong_server_major_is_a_clear_error():
    with pytest.raises(ClusterRefusedError, match="major version must equal"):
        check_major("8.19.3", "http://es.example:9200")
    check_major("9.2.8", "http://es.example:9200")


def test_rejected_documents_are_counted_with_reasons(es_client, index_prefix):
    index = flow_test_index(es_client, f"{index_prefix}-test-rejects0")
    body = (
        b'{"index":{"_id":"0"}}\n{"source.ip":"10.0.0.1","network.bytes":5}\n'
        b'{"index":{"_id":"1"}}\n{"source.ip":"10.0.0.1","surprise":"field"}\n'
        b'{"index":{"_id":"2"}}\n{"source.ip":"not an ip"}\n'
    )
    tally = BulkSender(es_client, index, 1, bulk_retry(0)).send(BulkBody(0, 3, body))

    assert (tally.indexed, tally.failed) == (1, 2)
    assert any("strict_dynamic_mapping_exception" in r for r in tally.reasons)
    assert any("document_parsing_exception" in r for r in tally.reasons)


def test_items_refused_for_a_terminal_reason_are_counted_from_the_short_answer_never_resent(es_client, index_prefix):
    index = flow_test_index(es_client, f"{index_prefix}-test-noresend")
    body = numbered_body(0, 4).payload + b'{"index":{"_id":"4"}}\n{"surprise":"field"}\n'
    with FaultProxy(ES_URL, "/_bulk", []) as proxy:
        tally = BulkSender(connect(connection_settings(proxy.url)), index, 1, bulk_retry(3)).send(BulkBody(0, 5, body))
    assert len(proxy.ids) == 1
    assert (tally.indexed, tally.failed, tally.requests, tally.retries) == (4, 1, 1, 0)
    assert tally.reasons[0].startswith("strict_dynamic_mapping_exception: ")


def test_a_write_block_fails_the_body_at_once_naming_the_block_and_the_node(es_client, index_prefix):
    index = flow_test_index(es_client, f"{index_prefix}-test-blocked0")
    # the block as the flood-stage watermark sets it (the disk of this shared node is not filled)
    es_client.indices.put_settings(index=index, settings={"index.blocks.read_only_allow_delete": True})
    node = es_client.cat.shards(index=index, format="json", h="node")[0]["node"]
    try:
        with FaultProxy(ES_URL, "/_bulk", []) as proxy:
            sender = BulkSender(connect(connection_settings(proxy.url)), index, 1, bulk_retry(3))
            with pytest.raises(ClusterRefusedError) as failure:
                sender.send(numbered_body(0, 5))
    finally:
        es_client.indices.put_settings(index=index, settings={"index.blocks.read_only_allow_delete": None})
    message = str(failure.value)
    assert len(proxy.ids) == 1
    assert f"index {index} for rows 0-4 on its first attempt" in message
    assert "cluster_block_exception" in message and "flood-stage watermark" in message
    assert f"index {index} has index.blocks.read_only_allow_delete" in message
    assert f"{node} has " in message and "now below the high watermark" in message


def test_resending_a_body_never_duplicates(es_client, index_prefix):
    index = flow_test_index(es_client, f"{index_prefix}-test-resend00")
    body = numbered_body(0, 100)
    sender = BulkSender(es_client, index, 2, bulk_retry(0))
    for _ in range(3):
        assert sender.send(body).indexed == 100
    es_client.indices.refresh(index=index)
    assert es_client.count(index=index)["count"] == 100


def test_throttled_unavailable_and_dropped_bulk_requests_are_retried_without_duplicates(es_client, index_prefix):
    index = flow_test_index(es_client, f"{index_prefix}-test-faults00")
    bodies = [numbered_body(start, 50) for start in range(0, 200, 50)]
    with FaultProxy(ES_URL, "/_bulk", [429, 503, "drop", 502]) as proxy:
        client = connect(connection_settings(proxy.url))
        tally = BulkSender(client, index, 2, bulk_retry(5, 0.05)).send_all(bodies)

    assert proxy.injected == [429, 503, "drop", 502]
    assert (tally.indexed, tally.failed, tally.retries) == (200, 0, 4)
    es_client.indices.refresh(index=index)
    assert es_client.count(index=index)["count"] == 200


def test_items_throttled_with_429_are_resent_alone(es_client, index_prefix):
    index = flow_test_index(es_client, f"{index_prefix}-test-items429")
    # the short answer says some items failed; the resend for outcomes gets 429 for items 0, 2, 4, 6, 8
    with FaultProxy(ES_URL, "/_bulk", ["errors", "items-429"]) as proxy:
        client = connect(connection_settings(proxy.url))
        tally = BulkSender(client, index, 1, bulk_retry(2, 0.01)).send(numbered_body(0, 10))

    every = [str(i) for i in range(10)]
    assert proxy.ids == [every, every, ["0", "2", "4", "6", "8"]]  # the body, again for outcomes, the throttled
    assert (tally.indexed, tally.failed, tally.retries, tally.requests) == (10, 0, 1, 3)
    es_client.indices.refresh(index=index)
    assert es_client.count(index=index)["count"] == 10


def test_items_still_throttled_after_the_retries_fail_the_body(es_client, index_prefix):
    index = flow_test_index(es_client, f"{index_prefix}-test-items430")
    with FaultProxy(ES_URL, "/_bulk", ["errors", "items-429", "items-429"]) as proxy:
        client = connect(connection_settings(proxy.url))
        sender = BulkSender(client, index, 1, bulk_retry(1, 0.01))
        with pytest.raises(
            ClusterUnavailableError, match=r"rows 0-3 after 1 retries: Elasticsearch at .* still refused 1 documents"
        ):
            sender.send(numbered_body(0, 4))
    assert proxy.ids[2:] == [["0", "2"]]  # one retry of the throttled, of which "0" is throttled again


def test_a_body_still_failing_after_its_retries_fails_naming_the_rows_and_index(es_client, index_prefix):
    index = flow_test_index(es_client, f"{index_prefix}-test-faults01")
    body = numbered_body(100, 1)
    with FaultProxy(ES_URL, "/_bulk", [429, 429, 429]) as proxy:
        client = connect(connection_settings(proxy.url))
        with pytest.raises(
            ClusterUnavailableError,
            match=f"index {index} for rows 100-100 after 2 retries: Elasticsearch at .* answered HTTP 429",
        ):
            BulkSender(client, index, 1, bulk_retry(2, 0.01)).send(body)
