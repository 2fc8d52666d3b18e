import orjson
import pyarrow as pa
import pytest

from flows_pipeline.bulk_encoding import encode_lines, split_bodies
from flows_pipeline.flow_normalizer import normalize
from flows_pipeline.partitions import hour_of
from flows_pipeline.synthetic import synthetic_batches

HOUR = hour_of("2021-10-28-03:00")


def flows(rows: int) -> pa.RecordBatch:
    return normalize(next(synthetic_batches(HOUR, rows)), HOUR).flows


def test_lines_are_bulk_actions_and_documents_with_row_ids():
    batch = flows(50)
    lines = encode_lines(batch, first_row=1000).to_pylist()
    expected = batch.to_pylist()
    for i, line in enumerate(lines):
        action, document, end = line.split("\n")
        assert end == ""
        assert orjson.loads(action) == {"index": {"_id": str(1000 + i)}}
        doc = orjson.loads(document)
        assert doc["event.sequence"] == 1000 + i
        assert doc["source.ip"] == expected[i]["source.ip"]
        assert doc["network.bytes"] == expected[i]["network.bytes"]
        assert doc["@timestamp"] == expected[i]["@timestamp"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert doc["source.port"] == expected[i]["source.port"]  # None -> null for ICMP


@pytest.mark.parametrize("max_bytes", [600, 4096, 100_000])
def test_bodies_never_exceed_the_byte_cap_and_keep_every_row(max_bytes):
    batch = flows(3000)
    lines = encode_lines(batch, first_row=0)
    bodies = list(split_bodies(lines, first_row=0, max_bytes=max_bytes, max_docs=10_000))

    assert all(len(b.payload) <= max_bytes for b in bodies)
    assert sum(b.docs for b in bodies) == 3000
    assert [b.first_row for b in bodies] == [sum(x.docs for x in bodies[:i]) for i in range(len(bodies))]
    assert b"".join(b.payload for b in bodies) == "".join(lines.to_pylist()).encode()


def test_bodies_respect_the_document_cap():
    bodies = list(split_bodies(encode_lines(flows(1000), 0), 0, max_bytes=10**9, max_docs=300))
    assert [b.docs for b in bodies] == [300, 300, 300, 100]


def test_a_document_larger_than_the_cap_is_an_error_not_a_truncation():
    with pytest.raises(ValueError, match="bulk cap"):
        list(split_bodies(encode_lines(flows(10), 0), 0, max_bytes=100, max_docs=10))
