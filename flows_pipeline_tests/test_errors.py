"""The project's errors: terminal or transient, with the cluster's reason, and every one pickles."""

import importlib
import pickle
import pkgutil
from pathlib import Path

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError

import flows_pipeline
from flows_pipeline.errors import FlowsError, TerminalError, TransientError
from flows_pipeline.es.cluster_errors import ClusterRefusedError, ClusterUnavailableError, classify_api_error
from flows_pipeline.sources.records import BadFlowFileError


def all_error_classes() -> set[type[FlowsError]]:
    for module in pkgutil.walk_packages(flows_pipeline.__path__, "flows_pipeline."):
        importlib.import_module(module.name)
    found, todo = set(), [FlowsError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_is_terminal_or_transient():
    for cls in all_error_classes() - {FlowsError}:
        assert issubclass(cls, TerminalError) != issubclass(cls, TransientError), cls


@pytest.mark.parametrize("cls", sorted(all_error_classes(), key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_every_error_survives_a_pickle_round_trip(cls):
    error = cls.__new__(cls)
    Exception.__init__(error, f"{cls.__name__} happened")
    error.status = 429
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls and str(copy) == f"{cls.__name__} happened" and copy.status == 429


def test_an_error_with_its_own_constructor_survives_pickling():
    error = BadFlowFileError(Path("/data/nfcapd.202110280300"), "truncated")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.problem, str(copy)) == (error.path, "truncated", str(error))


def api_error(status: int, body: dict) -> ApiError:
    meta = ApiResponseMeta(
        status=status,
        http_version="1.1",
        headers=HttpHeaders(),
        duration=0.0,
        node=NodeConfig("https", "es.example", 9200),
    )
    return ApiError(message=str(body), meta=meta, body=body)


def error_body(status: int, error_type: str, reason: str, **extra) -> dict:
    return {"error": {"type": error_type, "reason": reason, **extra}, "status": status}


@pytest.mark.parametrize(
    ("status", "error_type", "extra", "transient"),
    [
        (429, "es_rejected_execution_exception", {}, True),  # a full write queue: throttling
        (429, "circuit_breaking_exception", {"durability": "TRANSIENT"}, True),
        (429, "circuit_breaking_exception", {"durability": "PERMANENT"}, False),
        (429, "cluster_block_exception", {}, False),  # flood-stage watermark: 429, but no resend lifts it
        (403, "cluster_block_exception", {}, False),
        (503, "unavailable_shards_exception", {}, True),
        (400, "mapper_parsing_exception", {}, False),
        (400, "illegal_argument_exception", {}, False),
        (403, "security_exception", {}, False),
        (404, "index_not_found_exception", {}, False),
        (502, "", {}, True),  # no type (a proxy's answer): the status decides
        (400, "", {}, False),
    ],
)
def test_the_clusters_error_type_decides_not_the_status(status, error_type, extra, transient):
    body = error_body(status, error_type, "the reason", **extra) if error_type else {"error": "bad gateway"}
    error = classify_api_error(api_error(status, body), "bulk request to index flows-x", "https://es.example:9200")
    assert error.retryable is transient
    assert isinstance(error, ClusterUnavailableError if transient else ClusterRefusedError)


def test_a_missing_shard_on_a_red_index_is_terminal():
    err = api_error(503, error_body(503, "unavailable_shards_exception", "primary shard is not active"))
    healing = classify_api_error(err, "bulk", "https://es.example:9200", red_index=lambda: None)
    red = classify_api_error(err, "bulk", "https://es.example:9200", red_index=lambda: "node n2 left")
    assert healing.retryable and not red.retryable
    assert "the index is red: node n2 left" in str(red)


def test_the_message_names_what_failed_the_clusters_reason_its_cause_and_the_fix():
    body = error_body(
        429,
        "cluster_block_exception",
        "index [flows-2021.10.28-03-abc] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage "
        "watermark, index has read-only-allow-delete block]",
        caused_by={"type": "some_cause", "reason": "the cause's reason"},
    )
    message = str(classify_api_error(api_error(429, body), "bulk request to index X", "https://es.example:9200"))
    assert message.startswith("bulk request to index X: Elasticsearch at https://es.example:9200 answered ")
    assert "HTTP 429 cluster_block_exception: index [flows-2021.10.28-03-abc] blocked by" in message
    assert "caused by some_cause: the cause's reason" in message
    assert "free disk space" in message


def test_the_shard_limit_is_named_with_its_setting():
    reason = "Validation Failed: 1: this action would add [1] shards, but this cluster currently has [1000]/[1000] "
    reason += "maximum normal shards open; for more information, see https://ela.st/max-shard-limit-reached;"
    error = classify_api_error(api_error(400, error_body(400, "validation_exception", reason)), "creating X", "u")
    assert not error.retryable
    assert "maximum normal shards open" in str(error) and "raise cluster.max_shards_per_node" in str(error)
