"""The extra nodes of the `cluster` tests, started and stopped by the project's own scripts/es.sh.

Each is started once per test session by its module's fixture and stopped by its PID when the
module is done, so at most one of them uses the machine's memory and cores at a time.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from elasticsearch import Elasticsearch

from flows_pipeline_tests.support import PROJECT, Project

ES_SH = PROJECT / "scripts" / "es.sh"


def es_sh(*args: str) -> str:
    """Run scripts/es.sh with `args`; its output, or a failure with its last lines."""
    done = subprocess.run(["bash", str(ES_SH), *args], cwd=PROJECT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/es.sh {' '.join(args)} failed ({done.returncode}): {done.stderr[-3000:]}")
    return done.stdout


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


def three_nodes_up() -> list[str]:
    """The HTTP URLs of n1, n2, n3 of a fresh 3-node cluster (scripts/es.sh cluster-up)."""
    es_sh("cluster-up")
    return es_sh("cluster-urls").strip().split(",")
