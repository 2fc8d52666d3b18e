from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows_pipeline.es.bulk_encoding import _json_value, assemble_bodies, encode_lines
from flows_pipeline.hour import hour_of
from flows_pipeline.sources.synthetic import synthetic_batches
from flows_pipeline.tables.normalizer import normalize

HOUR = hour_of("2021-10-28-03:00")

ID_PREFIX, ATTEMPT = "abcdef12-2803-", "2021.10.28-03-abcdef12-1635390000000"


def flows(rows: int) -> pa.RecordBatch:
    return normalize(next(synthetic_batches(HOUR, rows)), HOUR).flows


def test_lines_are_bulk_actions_and_documents_with_row_ids():
    batch = flows(200)
    lines = encode_lines(batch, 1000, ID_PREFIX, ATTEMPT).to_pylist()
    expected = batch.to_pylist()
    for i, line in enumerate(lines):
        action, document, end = line.split("\n")
        assert end == ""
        assert orjson.loads(action) == {"index": {"_id": f"{ID_PREFIX}{1000 + i}"}}
        doc = orjson.loads(document)
        assert doc["event.sequence"] == 1000 + i
        assert doc["flows.attempt"] == ATTEMPT
        assert doc["source.ip"] == expected[i]["source.ip"]
        assert doc["network.bytes"] == expected[i]["network.bytes"]
        assert doc["@timestamp"] == expected[i]["@timestamp"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert doc.get("source.port") == expected[i]["source.port"]
        # every document holds exactly the row's non-null fields: a null (ICMP's ports) is left out
        assert set(doc) - {"event.sequence", "flows.attempt"} == {k for k, v in expected[i].items() if v is not None}


@pytest.mark.parametrize("max_bytes", [900, 4096, 100_000])
def test_bodies_never_exceed_the_byte_cap_and_keep_every_row(max_bytes):
    batch = flows(3000)
    lines = encode_lines(batch, 0, ID_PREFIX, ATTEMPT)
    bodies = list(assemble_bodies([(0, lines)], max_bytes=max_bytes, max_docs=10_000))

    assert all(len(b.payload) <= max_bytes for b in bodies)
    assert sum(b.docs for b in bodies) == 3000
    assert [b.first_row for b in bodies] == [sum(x.docs for x in bodies[:i]) for i in range(len(bodies))]
    assert b"".join(b.payload for b in bodies) == "".join(lines.to_pylist()).encode()


def test_bodies_respect_the_document_cap():
    bodies = list(
        assemble_bodies([(0, encode_lines(flows(1000), 0, ID_PREFIX, ATTEMPT))], max_bytes=10**9, max_docs=300)
    )
    assert [b.docs for b in bodies] == [300, 300, 300, 100]


def test_a_document_larger_than_the_cap_is_an_error_not_a_truncation():
    with pytest.raises(ValueError, match="bulk cap"):
        list(assemble_bodies([(0, encode_lines(flows(10), 0, ID_PREFIX, ATTEMPT))], max_bytes=100, max_docs=10))


@given(st.lists(st.one_of(st.none(), st.integers(-(10**13), 253402300799999)), max_size=200))
def test_timestamps_are_encoded_like_strftime(millis):
    column = pa.array(millis, pa.timestamp("ms", tz="UTC"))
    expected = [
        None
        if m is None
        else (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=m)).isoformat(timespec="milliseconds")
        for m in millis
    ]
    encoded = _json_value(column).to_pylist()
    assert encoded == [None if e is None else '"' + e.replace("+00:00", "Z") + '"' for e in expected]


@given(
    st.integers(-(10**13), 253402300799999 - 3 * 3_600_000),
    st.lists(st.integers(0, 3 * 3_600_000), min_size=1, max_size=200),
)
def test_timestamps_of_a_few_hours_are_looked_up_like_strftime(start, offsets):
    # a batch's timestamps within a few hours take the look-up tables, not the arithmetic
    millis = [start + offset for offset in offsets]
    column = pa.array(millis, pa.timestamp("ms", tz="UTC"))
    expected = [
        '"' + (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=m)).isoformat(timespec="milliseconds") + '"'
        for m in millis
    ]
    assert _json_value(column).to_pylist() == [e.replace("+00:00", "Z") for e in expected]


def test_a_column_of_one_value_is_written_like_any_other():
    def with_bytes(values: list[int]) -> pa.RecordBatch:
        batch = flows(300)
        column = batch.schema.get_field_index("network.bytes")
        return batch.set_column(column, "network.bytes", pa.array(values, pa.int64()))

    def documents(batch: pa.RecordBatch) -> list[dict]:
        return [orjson.loads(line.split("\n")[1]) for line in encode_lines(batch, 0, ID_PREFIX, ATTEMPT).to_pylist()]

    constant_docs = documents(with_bytes([1500] * 300))
    varying_docs = documents(with_bytes([1500] * 299 + [1501]))
    assert [d["network.bytes"] for d in constant_docs] == [1500] * 300
    assert constant_docs[:299] == varying_docs[:299]
    assert list(constant_docs[0]) == list(varying_docs[0])  # the same fields in the same order


def test_bodies_span_read_batches_so_small_batches_still_fill_requests():
    batch = flows(3000)
    encoded = [(i, encode_lines(batch.slice(i, 50), i, ID_PREFIX, ATTEMPT)) for i in range(0, 3000, 50)]
    lines = [line.encode() for line in encode_lines(batch, 0, ID_PREFIX, ATTEMPT).to_pylist()]
    whole = b"".join(lines)
    bodies = list(assemble_bodies(encoded, max_bytes=100_000, max_docs=1000))

    # every body but the last is full: its next document would not have fitted
    assert all(len(b.payload) + len(lines[b.first_row + b.docs]) > 100_000 for b in bodies[:-1])
    assert bodies[0].docs > 50  # more than one read batch
    assert all(len(b.payload) <= 100_000 for b in bodies)
    assert b"".join(b.payload for b in bodies) == whole
    assert [b.first_row for b in bodies] == [sum(x.docs for x in bodies[:i]) for i in range(len(bodies))]
