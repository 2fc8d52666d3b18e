"""A secured node (HTTP and transport TLS from a private CA, security on): an hour loads with
user/password and with an API key of the least privileges (the README's "Production cluster"
role), and a wrong password, a missing privilege or a missing CA fail at once, naming no secret."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from flows_pipeline.es.cluster_errors import ClusterRefusedError
from flows_pipeline.es.connection import ConnectionSettings, connect
from flows_pipeline.hour import hour_of
from flows_pipeline_tests.nodes import SecuredNode, es_sh, secured_node_up
from flows_pipeline_tests.support import make_project

PARTITION = "2021-10-28-05:00"
ROWS = 20_000  # make_project's hour


@pytest.fixture(scope="module")
def secured_node():
    node = secured_node_up()
    yield node
    es_sh("secured-down")


@pytest.fixture(scope="module")
def secured_prefix(secured_node: SecuredNode):
    prefix = f"flowssec{uuid.uuid4().hex[:8]}"
    yield prefix
    client = secured_node.client()
    names = list(  # a real node names what it deletes
        client.indices.get(index=f"{prefix}*,summary-{prefix}", expand_wildcards="all", ignore_unavailable=True)
    )
    if names:
        client.indices.delete(index=names)
    client.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-hourly")


def loader_role(prefix: str) -> dict:
    """The least privileges a load needs (README, "Production cluster"): the cluster's health and
    version, templates; the buckets and their aliases, the publication lock, the summary index."""
    return {
        "cluster": ["monitor", "manage_index_templates"],
        "indices": [{"names": [prefix, f"{prefix}-*", f"summary-{prefix}"], "privileges": ["manage", "write", "read"]}],
    }


def event_log_text(project, run_id: str) -> str:
    with project.instance() as instance:
        return "\n".join(str(entry) for entry in instance.all_logs(run_id))


def test_an_hour_loads_over_tls_with_user_and_password_that_appear_nowhere(tmp_path, secured_node, secured_prefix):
    project = make_project(tmp_path, secured_prefix)
    env = secured_node.env(project, ES_USERNAME="elastic", ES_PASSWORD=secured_node.password)
    done = project.materialize(PARTITION, extra_env=env)
    assert done.returncode == 0, done.stderr[-4000:]

    alias = f"{secured_prefix}-{hour_of(PARTITION).label}"
    assert secured_node.client().count(index=alias)["count"] == ROWS
    assert secured_node.password not in done.stdout + done.stderr
    assert secured_node.password not in event_log_text(project, project.latest_run_id())


def test_an_api_key_of_the_least_privileges_loads_and_reloads_an_hour(tmp_path, secured_node, secured_prefix):
    key = secured_node.client().security.create_api_key(
        name=f"{secured_prefix}-loader", role_descriptors={"flows_loader": loader_role(secured_prefix)}
    )
    project = make_project(tmp_path, secured_prefix)
    env = secured_node.env(project, ES_API_KEY=key["encoded"])
    partition = "2021-10-28-06:00"
    for _ in range(2):  # a load, then a re-run that replaces it
        done = project.materialize(partition, extra_env=env)
        assert done.returncode == 0, done.stderr[-4000:]
        assert key["api_key"] not in done.stdout + done.stderr and key["encoded"] not in done.stdout + done.stderr

    client = secured_node.client()
    alias = f"{secured_prefix}-{hour_of(partition).label}"
    assert client.count(index=alias)["count"] == ROWS
    attempts = client.indices.get_alias(name=f"{alias}-*", expand_wildcards="all")
    assert sum(len(entry["aliases"]) for entry in attempts.values()) == 1, "the re-run replaced the first load"
    assert key["encoded"] not in event_log_text(project, project.latest_run_id())

    # a retention pass with the same key: the hour of 2021 is long expired, its bucket goes
    command = [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "flows_pipeline.definitions"]
    retention = subprocess.run(
        [*command, "-j", "flows_retention_job"],
        cwd=project.cwd,
        env={**env, "FLOWS_RETENTION_DAYS": "30"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert retention.returncode == 0, retention.stderr[-4000:]
    assert not client.indices.exists_alias(name=alias)
    assert key["encoded"] not in retention.stdout + retention.stderr


def test_a_wrong_password_fails_the_run_with_401_naming_no_secret(tmp_path, secured_node, secured_prefix):
    wrong = "Wr0ng/pass?word#" + uuid.uuid4().hex[:6]
    project = make_project(tmp_path, secured_prefix)
    done = project.materialize(
        "2021-10-28-07:00", extra_env=secured_node.env(project, ES_USERNAME="elastic", ES_PASSWORD=wrong)
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "401" in output and "ES_PASSWORD" in output, output[-4000:]
    assert wrong not in output and wrong not in event_log_text(project, project.latest_run_id())


def test_a_missing_ca_is_a_tls_refusal_naming_es_ca_certs_and_no_secret(secured_node):
    settings = ConnectionSettings(
        url=secured_node.url, request_timeout_s=10, username="elastic", password=secured_node.password
    )
    with pytest.raises(ClusterRefusedError) as refused:
        connect(settings)
    message = str(refused.value)
    assert "TLS" in message and "ES_CA_CERTS" in message and secured_node.url in message
    assert secured_node.password not in message


def test_a_key_without_a_privilege_is_a_403_naming_the_privilege_and_no_secret(secured_node, secured_prefix):
    role = loader_role(secured_prefix)
    role["cluster"].remove("monitor")
    key = secured_node.client().security.create_api_key(
        name=f"{secured_prefix}-no-monitor", role_descriptors={"flows_loader": role}
    )
    settings = ConnectionSettings(
        url=secured_node.url, request_timeout_s=10, api_key=key["encoded"], ca_certs=secured_node.ca_certs
    )
    with pytest.raises(ClusterRefusedError) as refused:
        connect(settings)
    message = str(refused.value)
    assert "403" in message and "monitor" in message
    assert key["encoded"] not in message and key["api_key"] not in message


def test_an_expired_api_key_is_named_expired_in_the_clusters_words_and_no_secret(secured_node, secured_prefix):
    key = secured_node.client().security.create_api_key(
        name=f"{secured_prefix}-short", expiration="1s", role_descriptors={"flows_loader": loader_role(secured_prefix)}
    )
    time.sleep(2)  # the key's expiration passes
    settings = ConnectionSettings(
        url=secured_node.url, request_timeout_s=10, api_key=key["encoded"], ca_certs=secured_node.ca_certs
    )
    with pytest.raises(ClusterRefusedError) as refused:
        connect(settings)
    message = str(refused.value)
    assert "401" in message and "EXPIRED" in message and "ES_API_KEY" in message
    assert "api key is expired" in message  # the cluster's own reason, quoted
    assert key["encoded"] not in message and key["api_key"] not in message
