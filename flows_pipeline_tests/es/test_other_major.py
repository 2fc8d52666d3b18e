"""A real server of another major version (8.x, scripts/es.sh other-major-up): the run fails
before any loading, naming the server's version and the client's."""

from __future__ import annotations

import elasticsearch
import pytest

from flows_pipeline_tests.nodes import es_sh, other_major_node_up
from flows_pipeline_tests.support import make_project


@pytest.fixture(scope="module")
def other_major_node():
    url = other_major_node_up()
    yield url
    es_sh("other-major-down")


def test_a_server_of_another_major_fails_the_run_naming_both_versions(tmp_path, other_major_node):
    server = elasticsearch.Elasticsearch(other_major_node).transport.perform_request(
        "GET", "/_nodes/_local?filter_path=nodes.*.version", headers={"accept": "application/json"}
    )
    server_version = next(iter(server.body["nodes"].values()))["version"]
    assert server_version.split(".")[0] != elasticsearch.__versionstr__.split(".")[0]

    project = make_project(tmp_path, "flowsmajor")
    done = project.materialize("2021-10-28-12:00", extra_env={"ES_URL": other_major_node})
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert server_version in output and elasticsearch.__versionstr__ in output, output[-4000:]
