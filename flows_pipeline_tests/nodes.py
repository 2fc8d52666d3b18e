"""The extra nodes of the `cluster` tests, started and stopped by the project's own scripts/es.sh.

Every node is scripts/es.sh's, so `scripts/es.sh stop-all` (which `.ci/run` runs on exit) stops
each by its PID whatever happened to the test session. The secured and the other-major node are
started by their module's fixture and stopped when the module is done; the 3-node cluster is
started once per session (its tests are in two modules) and stopped after the last test that
uses it (conftest.py), so the extra nodes of different modules seldom share the machine.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from elasticsearch import Elasticsearch

from flows_pipeline_tests.support import PROJECT, Project, run_script

ES_SH = PROJECT / "scripts" / "es.sh"


def es_sh(*args: str) -> str:
    """Run scripts/es.sh with `args`; its output, or a failure with its last lines."""
    return run_script(ES_SH, *args)


@dataclass(frozen=True)
class SecuredNode:
    """A node with security on, HTTP TLS from a private CA, and the elastic user's password."""

    url: str
    ca_certs: str
    password: str

    def client(self, **auth) -> Elasticsearch:
        """A client of the elastic user (or of `auth`), trusting the node's CA."""
        return Elasticsearch(self.url, ca_certs=self.ca_certs, **(auth or {"basic_auth": ("elastic", self.password)}))

    def env(self, project: Project, **credentials: str) -> dict[str, str]:
        """The project's environment pointed at this node with `credentials` (ES_USERNAME=…, ES_API_KEY=…)."""
        env = {key: value for key, value in project.env.items() if not key.startswith("ES_")}
        return {**env, "ES_URL": self.url, "ES_CA_CERTS": self.ca_certs, **credentials}


def secured_node_up() -> SecuredNode:
    es_sh("secured-up")
    found = dict(line.split("=", 1) for line in es_sh("secured-env").split())
    return SecuredNode(
        url=found["ES_URL"],
        ca_certs=found["ES_CA_CERTS"],
        password=Path(found["ES_PASSWORD_FILE"]).read_text().strip(),
    )


def other_major_node_up() -> str:
    """The URL of a node of another major version (scripts/es.sh other-major-up)."""
    output = es_sh("other-major-up")
    return next(word for word in output.split() if word.startswith("http://"))


@dataclass(frozen=True)
class ClusterNode:
    name: str  # n1, n2, n3: the node.name, which allocation filters and error messages use
    url: str


class ThreeNodes:
    """scripts/es.sh's 3-node cluster (`cluster-up`): n1..n3 on ES_CLUSTER_PORT and the next two
    ports, transport on ES_CLUSTER_TRANSPORT_PORT and the next two. Tests kill nodes and change
    the cluster's settings; `ready()` undoes both before each test."""

    def __init__(self) -> None:
        es_sh("cluster-up")
        self.nodes = [ClusterNode(f"n{i}", url) for i, url in enumerate(es_sh("cluster-urls").strip().split(","), 1)]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node(self, name: str) -> ClusterNode:
        return next(node for node in self.nodes if node.name == name)

    def pids(self) -> dict[str, int | None]:
        """Each node's PID, None for a node that is not running."""
        found: dict[str, int | None] = {}
        for line in es_sh("cluster-pids").splitlines():
            name, pid, _ = line.split()
            found[name] = int(pid) if pid != "-" and _alive(int(pid)) else None
        return found

    def kill(self, name: str) -> None:
        """SIGKILL by its PID: the node dies as a crashed machine would, without leaving the cluster."""
        pid = self.pids()[name]
        assert pid is not None, f"{name} is not running"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)

    def ready(self) -> None:
        """Three nodes, green, without the indices and persistent settings earlier tests left."""
        for name, pid in self.pids().items():
            if pid is None:
                es_sh("cluster-start", name.removeprefix("n"))
        client = Elasticsearch(self.urls)
        try:
            client.cluster.health(wait_for_nodes="3", timeout="120s")
            settings = client.cluster.get_settings(flat_settings=True)
            if settings["persistent"] or settings["transient"]:
                client.cluster.put_settings(
                    persistent=dict.fromkeys(settings["persistent"]), transient=dict.fromkeys(settings["transient"])
                )
            names = [name for name in client.indices.get(index="*", expand_wildcards="all") if not name.startswith(".")]
            if names:
                client.indices.delete(index=",".join(names))
            health = client.cluster.health(wait_for_status="green", wait_for_nodes="3", timeout="120s")
            assert health["status"] == "green" and health["number_of_nodes"] == 3, health
        finally:
            client.close()

    def down(self) -> None:
        es_sh("cluster-down")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
