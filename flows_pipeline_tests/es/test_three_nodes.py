"""Three nodes, ES_URL naming them all, FLOWS_INDEX_REPLICAS=1: the node named first is killed
(SIGKILL by its PID) in the middle of the load, and the hour ends with exactly its rows on a
green cluster of the two others."""

from __future__ import annotations

import subprocess
import time
import uuid

from elasticsearch import Elasticsearch

from flows_pipeline.hour import hour_of
from flows_pipeline_tests.nodes import ThreeNodes
from flows_pipeline_tests.support import indexing_started, make_project

PARTITION = "2021-10-28-11:00"
ROWS = 30_000


def test_killing_the_first_named_node_mid_load_leaves_the_hour_exact_and_the_cluster_green(
    tmp_path, three_nodes: ThreeNodes
):
    survivor = Elasticsearch(three_nodes.urls[1:])  # n2, n3; n1 is the victim
    # The victim holds no shard copy: it stands for the node a client happens to talk to. (A node
    # holding the attempt index's only copy is the lost-primary case: the run fails, see issue 13.)
    survivor.cluster.put_settings(persistent={"cluster.routing.allocation.exclude._name": "n1"})
    survivor.cluster.health(wait_for_no_relocating_shards=True, wait_for_status="green", timeout="60s")

    prefix = f"flowsthree{uuid.uuid4().hex[:8]}"
    project = make_project(tmp_path, prefix)
    env = {
        **project.env,
        "ES_URL": ",".join(three_nodes.urls),
        "FLOWS_INDEX_REPLICAS": "1",
        "FLOWS_SYNTHETIC_ROWS": str(ROWS),
        "FLOWS_ROW_GROUP_ROWS": "5000",
        "FLOWS_MAX_ROW_GROUPS_PER_CHUNK": "6",
        "FLOWS_BULK_MAX_DOCS": "300",  # many requests: some are in flight to n1 when it dies
        "FLOWS_BULK_IN_FLIGHT": "1",
    }
    attempts = f"{prefix}-{hour_of(PARTITION).label}-*"
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    run = subprocess.Popen(project.command(PARTITION), cwd=project.cwd, env=env, **output)
    try:
        deadline = time.monotonic() + 180
        while run.poll() is None and time.monotonic() < deadline:
            if survivor.indices.exists(index=attempts, expand_wildcards="all") and indexing_started(survivor, attempts):
                break
            time.sleep(0.05)
        assert run.poll() is None, "the load ended before n1 could be killed"
        three_nodes.kill("n1")
        log, _ = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == 0, log[-4000:]

    alias = f"{prefix}-{hour_of(PARTITION).label}"
    assert survivor.count(index=alias)["count"] == ROWS
    health = survivor.cluster.health(index=alias, wait_for_status="green", timeout="30s")
    assert health["status"] == "green" and health["number_of_nodes"] == 2
    settings = survivor.indices.get_settings(index=alias, name="index.number_of_replicas")
    assert next(iter(settings.values()))["settings"]["index"]["number_of_replicas"] == "1"
