"""Connecting: a URL that does not parse, TLS set up wrongly, a missing privilege — each named with
its fix, and no part of a credential ever in a message."""

from __future__ import annotations

import http.server
import json
import socket
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
from flows_pipeline.es.connection import ClusterUrlError, connect, node_urls, parse_cluster_url, safe_url
from flows_pipeline_tests.support import ES_URL, connection_settings

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


# a server of another major version, named with both versions: es/test_other_major.py (a real 8.19 node)


# ES_URL as a list of node URLs (several URLs, no credentials in them; no sniffing)


def test_a_list_of_urls_is_split_on_commas_and_trimmed():
    assert node_urls(" https://es1:9200, https://es2:9200 ,https://es3:9200,") == [
        "https://es1:9200",
        "https://es2:9200",
        "https://es3:9200",
    ]
    assert node_urls("http://127.0.0.1:9200") == ["http://127.0.0.1:9200"]


@pytest.mark.parametrize(
    "url",
    [
        "https://loader:S3cr/t?pw#1@es1:9200,https://es2:9200",
        "https://es1:9200,https://loader:S3cr/t?pw#1@es2:9200",
        "https://loader:S3cr,t?pw#1@es1:9200",  # a comma in a password makes it a list too
    ],
)
def test_credentials_in_a_list_of_urls_are_refused_naming_no_part_of_them(url):
    with pytest.raises(ConfigurationError) as refused:
        node_urls(url)
    message = str(refused.value)
    assert "ES_USERNAME/ES_PASSWORD" in message and "ES_API_KEY" in message
    for secret_part in ("loader", "S3cr", "pw#1", "es1", "es2"):
        assert secret_part not in message


def test_an_empty_url_is_refused():
    with pytest.raises(ConfigurationError, match="ES_URL is empty"):
        node_urls(" , ")


def test_every_url_of_a_list_is_shown():
    assert safe_url("https://es1:9200,https://es2:9201/") == "https://es1:9200,https://es2:9201"


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_dead_first_node_of_the_list_does_not_stop_the_connection(es_client):
    dead = f"http://127.0.0.1:{closed_port()}"
    client = connect(connection_settings(f"{dead},{ES_URL}"))
    for _ in range(4):  # requests go round the pool; the dead node is set aside, never fatal
        assert client.cluster.health()["status"] in ("green", "yellow")
