"""States of the cluster that no resend heals, named before anything is created or as soon as a
load meets them: unassignable replicas, shard limits, primaries that cannot start, the disk
watermarks, a primary lost with its node. Against the local node where it can show them, and the
suite's 3-node cluster (scripts/es.sh; marker `cluster`) where it cannot."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from flows_pipeline.es.bulk_sender import BulkRetry, BulkSender
from flows_pipeline.es.cluster_errors import ClusterRefusedError
from flows_pipeline.es.cluster_health import (
    check_can_create,
    check_created,
    check_index_health,
    explain_unassigned,
    index_nodes,
)
from flows_pipeline.es.connection import connect
from flows_pipeline_tests.es.test_bulk_sender import numbered_body
from flows_pipeline_tests.fault_proxy import FaultProxy
from flows_pipeline_tests.nodes import ThreeNodes
from flows_pipeline_tests.support import ES_URL, bulk_retry, connection_settings


def test_replicas_that_no_node_can_hold_are_refused_before_anything_is_created(es_client, index_prefix):
    index = f"{index_prefix}-replicas"
    with pytest.raises(ClusterRefusedError) as failure:
        check_can_create(es_client, ES_URL, index=index, shards=1, replicas=1)
    message = str(failure.value)
    assert "has 1 data node(s)" in message and "FLOWS_INDEX_REPLICAS=1 needs 2" in message
    assert "Lower FLOWS_INDEX_REPLICAS to 0" in message and "nothing was created" in message
    assert not es_client.indices.exists(index=index, expand_wildcards="all")
    check_can_create(es_client, ES_URL, index=index, shards=1, replicas=0)


def test_an_index_beyond_the_shard_limit_is_refused_before_anything_is_created(es_client, index_prefix):
    with pytest.raises(ClusterRefusedError, match=r"cluster.max_shards_per_node=1000 x 1 data nodes\); this index"):
        check_can_create(es_client, ES_URL, index=f"{index_prefix}-many", shards=1001, replicas=0)


def test_an_index_whose_primary_cannot_start_is_explained_by_the_allocation_deciders(es_client, index_prefix):
    index = f"{index_prefix}-nowhere"
    response = es_client.indices.create(
        index=index,
        settings={"number_of_replicas": 0, "index.routing.allocation.require._name": "no-such-node"},
        timeout="1s",
    )
    try:
        with pytest.raises(ClusterRefusedError) as failure:
            check_created(response, es_client, ES_URL, index)
    finally:
        es_client.indices.delete(index=index)
    message = str(failure.value)
    assert f"creating index {index}: Elasticsearch at {ES_URL} created it but could not start its shards" in message
    assert f"primary shard 0 of {index} is unassigned (INDEX_CREATED)" in message
    assert 'node does not match index setting [index.routing.allocation.require] filters [_name:"no-such-node"]' in (
        message
    )


def test_past_the_disk_watermarks_nothing_is_created_and_writes_name_the_node(three_nodes: ThreeNodes):
    url = three_nodes.node("n1").url
    client = connect(connection_settings(url))
    client.indices.create(index="probe", settings={"number_of_shards": 1, "number_of_replicas": 0})
    # every node past every watermark, as a full disk would be (the flood-red-attempt case's settings)
    watermarks = {f"cluster.routing.allocation.disk.watermark.{w}": "1000tb" for w in ("low", "high", "flood_stage")}
    client.cluster.put_settings(
        persistent={
            "cluster.routing.allocation.disk.threshold_enabled": True,
            "cluster.info.update.interval": "10s",
            **watermarks,
        }
    )
    try:
        for _ in range(60):  # the disk monitor reads the nodes' disks and blocks the probe at its next pass (10 s)
            if client.indices.get_settings(index="probe", name="index.blocks.read_only_allow_delete"):
                break
            time.sleep(1)
        with pytest.raises(ClusterRefusedError) as refused:
            check_can_create(client, url, index="attempt", shards=1, replicas=0)
        assert "n1 is past the flood-stage disk watermark" in str(refused.value)
        assert "cluster.routing.allocation.disk.watermark.flood_stage=1000tb" in str(refused.value)
        assert "Free disk space on n1, n2, n3" in str(refused.value)

        created = client.indices.create(index="attempt", settings={"number_of_replicas": 0}, timeout="2s")
        with pytest.raises(ClusterRefusedError, match=r"n\d: the node is above the high watermark cluster setting"):
            check_created(created, client, url, "attempt")

        with pytest.raises(ClusterRefusedError) as blocked:
            BulkSender(client, "probe", 1, bulk_retry(3)).send(numbered_body(0, 3))
        message = str(blocked.value)
        holder = client.cat.shards(index="probe", format="json", h="node")[0]["node"]
        assert "cluster_block_exception" in message and "read_only_allow_delete" in message
        assert f"{holder} has " in message and "past the flood-stage disk watermark" in message
    finally:
        client.cluster.put_settings(
            persistent={
                "cluster.routing.allocation.disk.threshold_enabled": None,
                "cluster.info.update.interval": None,
                **dict.fromkeys(watermarks),
            }
        )
        client.indices.delete(index="probe,attempt", ignore_unavailable=True)


def test_a_lost_primary_fails_the_load_at_once_naming_the_red_index_and_its_node(three_nodes: ThreeNodes):
    entry = three_nodes.node("n1")  # the node the client talks to holds no shard, so it is never the one killed
    client = connect(connection_settings(entry.url))
    client.indices.create(
        index="lost",
        settings={"number_of_shards": 1, "number_of_replicas": 0, "index.routing.allocation.exclude._name": entry.name},
    )
    client.cluster.health(index="lost", wait_for_status="green", timeout="30s")
    known = index_nodes(client, "lost")
    holder = client.cat.shards(index="lost", format="json", h="node")[0]["node"]
    sender = BulkSender(client, "lost", 1, _quick_shard_wait(), known_nodes=known)
    assert sender.send(numbered_body(0, 10)).indexed == 10

    three_nodes.kill(holder)
    with FaultProxy(entry.url, "/_bulk", []) as proxy:
        started = time.monotonic()
        proxied = BulkSender(connect(connection_settings(proxy.url)), "lost", 1, _quick_shard_wait(), known_nodes=known)
        with pytest.raises(ClusterRefusedError) as failure:
            proxied.send(numbered_body(10, 10))
    message = str(failure.value)
    assert time.monotonic() - started < 30
    assert len(proxy.ids) == 1  # neither resent for its item outcomes nor retried
    assert "index lost is red" in message and f"the node {holder} (" in message and "left the cluster" in message
    with pytest.raises(ClusterRefusedError, match=f"index lost at {entry.url} is red: primary shard 0"):
        check_index_health(client, entry.url, "lost", "loading rows 20-29")
    assert "NODE_LEFT" in explain_unassigned(client, "lost")
    with pytest.raises(ClusterRefusedError, match=r"has 2 data node\(s\) \(n\d, n\d\), but FLOWS_INDEX_REPLICAS=2"):
        check_can_create(client, entry.url, index="next", shards=1, replicas=2)


def _quick_shard_wait() -> BulkRetry:
    """The resource's retry policy, but waiting 2 s (not 60 s) for a primary that is not active."""
    return replace(bulk_retry(3), shard_wait_s=2.0)
