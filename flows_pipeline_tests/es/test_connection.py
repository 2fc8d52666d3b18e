"""ES_URL as one URL or a list of node URLs: parsed, shown without credentials, and a list that
holds credentials refused naming no part of it; a dead first node does not stop the connection."""

from __future__ import annotations

import socket

import pytest

from flows_pipeline.errors import ConfigurationError
from flows_pipeline.es.connection import connect, node_urls, safe_urls
from flows_pipeline_tests.support import ES_URL, connection_settings


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
    assert safe_urls("https://es1:9200,https://es2:9201/") == "https://es1:9200,https://es2:9201/"


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
