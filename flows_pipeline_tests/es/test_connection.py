"""Connecting: a URL that does not parse, TLS set up wrongly, a missing privilege — each named with
its fix, and no part of a credential ever in a message."""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from flows_pipeline.errors import ConfigurationError
from flows_pipeline.es.cluster_errors import ClusterRefusedError
from flows_pipeline.es.connection import ClusterUrlError, connect, parse_cluster_url, safe_url
from flows_pipeline_tests.es_nodes import start_nodes, stop_nodes
from flows_pipeline_tests.support import connection_settings

# passwords as `openssl rand -base64` makes them, pasted into ES_URL without percent-encoding
UNENCODED_PASSWORDS = ["kX9/2fQ+Lm7Secret", "Hq#4Secret", "9200/Zq8Secret", "ab?cdSecret", "p@ss/Secret"]


@pytest.mark.parametrize("password", UNENCODED_PASSWORDS)
def test_a_url_that_does_not_parse_never_shows_any_part_of_its_password(password):
    url = f"https://flows_writer:{password}@127.0.0.1:9279"
    with pytest.raises(ClusterUrlError) as failure:
        connect(connection_settings(url))
    message = str(failure.value)
    assert "percent-encoded" in message and "ES_USERNAME/ES_PASSWORD" in message
    assert failure.value.__cause__ is None and failure.value.__context__ is None  # nothing chained that quotes it
    shown = message + repr(failure.value) + safe_url(url)
    for part in {password, *password.replace("/", " ").replace("?", " ").replace("#", " ").split()}:
        if len(part) > 2:
            assert part not in shown, part


def test_credentials_in_a_percent_encoded_url_are_used_but_never_shown():
    parsed = parse_cluster_url("https://flows_writer:kX9%2F2fQ%2BLm7Secret@es.example:9243/es/")
    assert (parsed.username, parsed.password) == ("flows_writer", "kX9/2fQ+Lm7Secret")
    assert str(parsed) == "https://es.example:9243/es" == safe_url("https://flows_writer:x%2Fy@es.example:9243/es")
    assert "Secret" not in repr(parsed) and "Secret" not in repr(connection_settings("https://u:Secret@h:1"))


def test_a_missing_ca_file_is_named_with_the_variable():
    with pytest.raises(ConfigurationError) as failure:
        connect(replace(connection_settings("https://localhost:9"), ca_certs="/nonexistent/ca.crt"))
    assert "ES_CA_CERTS names /nonexistent/ca.crt, which is not a file" in str(failure.value)
    assert "make es-up" not in str(failure.value)


def test_a_certificate_from_an_unknown_ca_names_es_ca_certs(tmp_path: Path):
    with _tls_listener(tmp_path) as url, pytest.raises(ClusterRefusedError) as failure:
        connect(connection_settings(url))
    message = str(failure.value)
    assert "TLS verification" in message and "ES_CA_CERTS" in message and "make es-up" not in message


# Elasticsearch 9.2.8's answer to a key without the cluster privilege `monitor` (the 403-misreported case)
FORBIDDEN = {
    "error": {
        "type": "security_exception",
        "reason": "action [cluster:monitor/nodes/info] is unauthorized for API key id [2fzUJ6IBp2cevj57YE0B] of user "
        "[elastic], this action is granted by the cluster privileges [monitor,manage,all]",
    },
    "status": 403,
}


def test_a_missing_privilege_is_named_with_the_action_and_the_privileges_not_as_bad_credentials():
    with _answering(403, FORBIDDEN) as url, pytest.raises(ClusterRefusedError) as failure:
        connect(connection_settings(url))
    message = str(failure.value)
    assert "HTTP 403 security_exception: action [cluster:monitor/nodes/info] is unauthorized" in message
    assert "granted by the cluster privileges [monitor,manage,all]" in message
    assert "refused the credentials" not in message


@contextmanager
def _answering(status: int, body: dict) -> Iterator[str]:
    """A loopback server that answers every request as Elasticsearch would, with `status` and `body`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    with _serving(http.server.HTTPServer(("127.0.0.1", 0), Handler)) as port:
        yield f"http://127.0.0.1:{port}"


@contextmanager
def _tls_listener(folder: Path) -> Iterator[str]:
    """An HTTPS listener whose certificate no default CA bundle trusts (self-signed, for 127.0.0.1)."""
    key, cert = folder / "node.key", folder / "node.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with _serving(server) as port:
        yield f"https://127.0.0.1:{port}"


@contextmanager
def _serving(server: http.server.HTTPServer) -> Iterator[int]:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.cluster
def test_a_server_of_another_major_is_named_with_its_version():
    # an 8.x node refuses the 9.x client's compatible-with=9 headers (media_type_header_exception)
    nodes = start_nodes("8.19.0", [9313])
    try:
        with pytest.raises(ClusterRefusedError) as failure:
            connect(connection_settings(nodes[0].url))
    finally:
        stop_nodes(nodes)
    assert f"Elasticsearch at {nodes[0].url} is version 8.19.0, but this project's client is 9." in str(failure.value)
    assert "major version must equal the server's" in str(failure.value)
