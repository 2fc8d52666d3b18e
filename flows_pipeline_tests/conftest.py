"""Shared fixtures: the real Elasticsearch (never a stand-in), and isolated Dagster/table homes.

Tests that use a fixture which needs the node are marked `elasticsearch` here, so that
`pytest -m "not elasticsearch"` runs all the others without one. Tests on the extra nodes that
scripts/es.sh starts for them (a secured node, three nodes, another major) are marked `cluster`
too: `pytest -m "not cluster"` leaves them out.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from flows_pipeline.errors import FlowsError
from flows_pipeline.es.connection import connect
from flows_pipeline_tests.support import Project, connection_settings, make_project

NEEDS_ELASTICSEARCH = frozenset({"es_client", "index_prefix", "project", "dagster_ui"})
NEEDS_CLUSTER = frozenset({"secured_node", "three_nodes", "other_major_node"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if NEEDS_CLUSTER & fixtures:
            item.add_marker(pytest.mark.cluster)
        # a test that starts its own nodes (`cluster`) needs Elasticsearch too
        if (NEEDS_ELASTICSEARCH | NEEDS_CLUSTER) & fixtures or item.get_closest_marker("cluster"):
            item.add_marker(pytest.mark.elasticsearch)


@pytest.fixture(scope="session")
def es_client() -> Elasticsearch:
    try:
        return connect(connection_settings())
    except FlowsError as err:
        pytest.fail(f"the tests need a real Elasticsearch: {err}")


@pytest.fixture(scope="session")
def index_prefix(es_client: Elasticsearch):
    """A prefix of this test session's own, so tests never touch the demo's `flows` indices."""
    prefix = f"flowstest{uuid.uuid4().hex[:8]}"
    yield prefix
    es_client.indices.delete(index=f"{prefix}*,summary-{prefix}*", expand_wildcards="all", ignore_unavailable=True)
    es_client.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}*")


@pytest.fixture
def project(tmp_path: Path, index_prefix: str) -> Project:
    return make_project(tmp_path, index_prefix)
