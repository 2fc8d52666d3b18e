"""Shared fixtures: the real Elasticsearch (never a stand-in), isolated Dagster/table homes, and
the suite's own PostgreSQL for the production instance (deploy/dagster.yaml).

Tests that use a fixture which needs the node are marked `elasticsearch` here, so that
`pytest -m "not elasticsearch"` runs all the others without one. Tests on the extra nodes that
scripts/es.sh starts for them (a secured node, three nodes, another major) are marked `cluster`
too: `pytest -m "not cluster"` leaves them out. Tests on PostgreSQL are marked `postgres`, tests on
the suite's own S3 server (s3proxy) `s3`, tests on the suite's own celery broker and workers `celery`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from flows_pipeline.errors import FlowsError
from flows_pipeline.es.connection import connect
from flows_pipeline_tests.celery_workers import TEST_BROKER, OwnBroker, Workers, redis_found
from flows_pipeline_tests.nodes import ThreeNodes
from flows_pipeline_tests.postgres import PRODUCTION_INSTANCE, TEST_CLUSTER, OwnPostgres, missing_tool, postgres_bindir
from flows_pipeline_tests.s3 import TEST_SERVER, OwnS3, java_found
from flows_pipeline_tests.support import Project, connection_settings, free_port, make_project

NEEDS_ELASTICSEARCH = frozenset({"es_client", "index_prefix", "project", "pg_project", "dagster_ui"})
NEEDS_CLUSTER = frozenset({"secured_node", "three_nodes", "three_node_cluster", "other_major_node"})
NEEDS_POSTGRES = frozenset({"own_postgres", "pg_project"})
NEEDS_S3 = frozenset({"own_s3"})
NEEDS_CELERY = frozenset({"own_broker", "celery_project", "celery_cluster_project"})


def _three_node_tests(items: list[pytest.Item]) -> list[pytest.Item]:
    return [item for item in items if "three_node_cluster" in getattr(item, "fixturenames", ())]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if NEEDS_CLUSTER & fixtures:
            item.add_marker(pytest.mark.cluster)
        if NEEDS_POSTGRES & fixtures:
            item.add_marker(pytest.mark.postgres)
        if NEEDS_CELERY & fixtures:
            item.add_marker(pytest.mark.celery)
        if NEEDS_S3 & fixtures:
            item.add_marker(pytest.mark.s3)
        # a test that starts its own nodes (`cluster`) needs Elasticsearch too
        if (NEEDS_ELASTICSEARCH | NEEDS_CLUSTER) & fixtures or item.get_closest_marker("cluster"):
            item.add_marker(pytest.mark.elasticsearch)
    # The 3-node cluster's tests (two modules) run one after the other, where the first of them is:
    # otherwise the three idle JVMs would share the 2 cores with every module in between.
    users = _three_node_tests(items)
    if users:
        first = items.index(users[0])
        rest = [item for item in items if item not in users]
        items[:] = rest[:first] + users + rest[first:]


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


@pytest.fixture(scope="session")
def own_postgres() -> Iterator[OwnPostgres]:
    """The suite's PostgreSQL cluster (scripts/postgres.sh, .pg/test, a free port), fresh each
    session and stopped at its end. Without PostgreSQL's binaries: skipped, but failed in CI."""
    if postgres_bindir() is None:
        missing_tool("PostgreSQL (initdb, pg_ctl)")
    cluster = OwnPostgres.up(TEST_CLUSTER, free_port())
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def own_s3() -> Iterator[OwnS3]:
    """The suite's s3proxy (scripts/s3proxy.sh, .s3/test, a free port), fresh each session and stopped
    at its end. Without Java: skipped, but failed in CI."""
    if not java_found():
        missing_tool("Java (for s3proxy)", "install a JDK 17+ or set S3_JAVA_HOME")
    server = OwnS3.up(TEST_SERVER, free_port())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def own_broker() -> Iterator[OwnBroker]:
    """The suite's celery broker (scripts/redis.sh, .redis/test, a free port), fresh each session and
    stopped at its end. Without Debian's redis-server: skipped, but failed in CI."""
    if not redis_found():
        missing_tool("redis-server (the celery broker)")
    broker = OwnBroker.up(TEST_BROKER, free_port())
    yield broker
    broker.stop()


@pytest.fixture
def celery_project(project: Project, own_broker: OwnBroker) -> Iterator[tuple[Project, Workers]]:
    """`project` with FLOWS_EXECUTOR=celery on the suite's broker, and its workers (scripts/workers.sh,
    .workers/test), which the test starts once its environment is final and which are stopped after it."""
    project.env |= {**own_broker.env, "FLOWS_EXECUTOR": "celery"}
    workers = Workers(env=project.env)
    yield project, workers
    workers.stop()


@pytest.fixture
def celery_cluster_project(
    pg_project: Project, own_broker: OwnBroker, own_s3: OwnS3
) -> Iterator[tuple[Project, Workers]]:
    """The layout of `make demo-cluster`: `pg_project` (the production instance on PostgreSQL) with its
    tables and step values on the suite's S3 and its steps on celery workers, each with a DAGSTER_HOME of
    its own (deploy/dagster.yaml). What the run and its workers exchange goes through the database, the
    broker and the bucket; on this one machine the run's folders exist for the workers too, so the test
    checks that no step value went to the run's DAGSTER_HOME (dagster-celery's task opens the instance
    from the run's own reference)."""
    pg_project.env |= {
        **own_broker.env,
        **own_s3.env,
        "FLOWS_EXECUTOR": "celery",
        "FLOWS_STORAGE_ROOT": own_s3.new_root(),
    }
    workers = Workers(env=pg_project.env, dagster_yaml=PRODUCTION_INSTANCE)
    yield pg_project, workers
    workers.stop()


@pytest.fixture
def pg_project(tmp_path: Path, index_prefix: str, own_postgres: OwnPostgres) -> Project:
    """`project`, with its DAGSTER_HOME the production instance (deploy/dagster.yaml) on a fresh
    database of the suite's PostgreSQL."""
    project = make_project(tmp_path, index_prefix)
    project.env |= own_postgres.dagster_home(project.home)
    return project


_LAST_THREE_NODE_TEST: list[pytest.Item] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    _LAST_THREE_NODE_TEST[:] = _three_node_tests(session.items)[-1:]


@pytest.fixture(scope="session")
def three_node_cluster(request: pytest.FixtureRequest) -> ThreeNodes:
    """scripts/es.sh's 3-node cluster, started once for every test that needs it."""
    cluster = ThreeNodes()
    request.addfinalizer(cluster.down)
    return cluster


@pytest.fixture
def three_nodes(three_node_cluster: ThreeNodes) -> ThreeNodes:
    """The 3-node cluster with three live nodes, green, and none of the state earlier tests left."""
    three_node_cluster.ready()
    return three_node_cluster


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    # the three nodes are stopped as soon as no later test needs them, not at the session's end:
    # the extra nodes of other modules (and the suite's own load) then have the machine's cores
    if item in _LAST_THREE_NODE_TEST and "three_node_cluster" in getattr(item, "funcargs", {}):
        item.funcargs["three_node_cluster"].down()
