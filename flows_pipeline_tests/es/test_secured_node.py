"""A secured node (HTTP and transport TLS from a private CA, security on): an hour loads with
user/password and with an API key of the least privileges (the README's "Production cluster"
role), and a wrong password, a missing privilege or a missing CA fail at once, naming no secret."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import AssetKey, build_sensor_context

from flows_pipeline.alerts import alert_settings
from flows_pipeline.es.cluster_errors import ClusterRefusedError
from flows_pipeline.es.connection import ConnectionSettings, connect
from flows_pipeline.es.credentials_expiry import certificate_expiry
from flows_pipeline.hour import hour_of
from flows_pipeline.orchestration.alert_sensors import build_credentials_expiry_sensor
from flows_pipeline.orchestration.resources import FlowsElasticsearch
from flows_pipeline_tests.alert_receivers import WebhookReceiver
from flows_pipeline_tests.nodes import SecuredNode, es_sh, secured_node_up
from flows_pipeline_tests.support import PROJECT, make_project

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
        name=f"{secured_prefix}-loader", expiration="5d", role_descriptors={"flows_loader": loader_role(secured_prefix)}
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
    # the key expires in 5 days, within FLOWS_EXPIRY_WARN_DAYS (14): the hour says so; the node's
    # certificate (30 days) does not
    with project.instance() as instance:
        [record] = instance.fetch_materializations(AssetKey("flow_index"), limit=1).records
    expiry = record.asset_materialization.metadata["credentials_expiry"].value
    assert re.fullmatch(
        rf"API key {secured_prefix}-loader \(id [^)]+\) expires in [45]\.\d days \(.*\): create .*", expiry
    )
    assert "TLS certificate" not in expiry

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


def test_a_key_expiring_within_the_warning_days_is_alerted_once(secured_node, secured_prefix):
    key = secured_node.client().security.create_api_key(
        name=f"{secured_prefix}-soon", expiration="3d", role_descriptors={"flows_loader": loader_role(secured_prefix)}
    )
    es = FlowsElasticsearch(url=secured_node.url, api_key=key["encoded"], ca_certs=secured_node.ca_certs)
    with WebhookReceiver() as webhook:
        sensor = build_credentials_expiry_sensor(alert_settings({"FLOWS_ALERT_WEBHOOK": webhook.url}))
        first = build_sensor_context(resources={"es": es})
        sensor(first)
        sensor(build_sensor_context(resources={"es": es}, cursor=first.cursor))  # told already
    [body] = webhook.bodies
    assert re.search(rf"API key {secured_prefix}-soon \(id [^)]+\) expires in [23]\.\d days", body["text"])
    assert body["metadata"]["event_type"] == "flows_credentials_expiring" and "ES_API_KEY" in body["text"]
    assert key["encoded"] not in json.dumps(body)


SECURED_CERTS = PROJECT / ".es" / "secured" / "config" / "certs"  # scripts/es.sh's secured node reads these


def expired_certificate(ca: Path, folder: Path) -> tuple[Path, Path]:
    """A node certificate (localhost, 127.0.0.1) signed by the node's CA, valid 2024-01-01 to 2024-01-02.

    elasticsearch-certutil refuses `--days` under 1 ("the certificate must be valid for at least one
    day"), so it cannot make one already expired: openssl's `ca` signs with explicit past dates."""
    key, csr, crt, config = (folder / name for name in ("node.key", "node.csr", "node.crt", "ca.cnf"))
    (folder / "index.txt").write_text("")
    (folder / "serial").write_text("1000\n")
    config.write_text(
        f"[ca]\ndefault_ca = ca\n[ca]\ndatabase = {folder}/index.txt\nnew_certs_dir = {folder}\n"
        f"serial = {folder}/serial\ndefault_md = sha256\npolicy = any\ncopy_extensions = copy\n"
        "unique_subject = no\n[any]\ncommonName = supplied\n"
    )
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)  # noqa: E731
    run("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=node",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")  # fmt: skip
    run("ca", "-batch", "-notext", "-config", str(config), "-cert", str(ca / "ca.crt"), "-keyfile", str(ca / "ca.key"),
        "-startdate", "20240101000000Z", "-enddate", "20240102000000Z", "-in", str(csr), "-out", str(crt))  # fmt: skip
    return crt, key


def wait_for(what: str, check, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def test_an_expired_server_certificate_is_named_expired_with_what_to_renew(secured_node, tmp_path):
    crt, key = expired_certificate(PROJECT / ".es" / "secured" / "ca", tmp_path)
    kept = tmp_path / "kept"
    kept.mkdir()
    for name in ("node.crt", "node.key"):
        shutil.copy2(SECURED_CERTS / name, kept / name)
    settings = ConnectionSettings(
        url=secured_node.url, request_timeout_s=10, username="elastic", password=secured_node.password,
        ca_certs=secured_node.ca_certs,
    )  # fmt: skip

    def refused() -> str | None:
        try:
            connect(settings)
        except ClusterRefusedError as err:
            return str(err)
        return None

    try:
        # the node reloads its certificate files when they change (resource.reload.interval.high, 5 s)
        shutil.copy2(key, SECURED_CERTS / "node.key")
        shutil.copy2(crt, SECURED_CERTS / "node.crt")
        message = wait_for("the node presents the expired certificate", refused)
        assert "EXPIRED" in message and "certificate has expired" in message  # the handshake's own words
        assert "renew the node's certificate" in message and "ES_CA_CERTS is not the cause" in message
        assert secured_node.password not in message
        assert certificate_expiry(secured_node.url, secured_node.ca_certs) is None  # no verified handshake
    finally:
        for name in ("node.key", "node.crt"):
            shutil.copy2(kept / name, SECURED_CERTS / name)
        wait_for("the node presents its valid certificate again", lambda: refused() is None)
    expiry = certificate_expiry(secured_node.url, secured_node.ca_certs)
    assert expiry is not None and 25 < expiry.days_left(datetime.now(UTC)) <= 30  # es.sh's --days 30
