"""Property: flow_summary's totals equal Elasticsearch's own aggregations of the same flows (exactly:
the counters here stay below 2^53, where Elasticsearch's double sums are exact)."""

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows_pipeline.es.bulk_encoding import encode_lines
from flows_pipeline.es.flow_mapping import es_properties
from flows_pipeline.tables.flow_schema import FLOW_TABLE_SCHEMA
from flows_pipeline.tables.normalizer import normalize
from flows_pipeline.tables.row_groups import RowGroupWriter, read_batches
from flows_pipeline.tables.summary import summarize
from flows_pipeline_tests.raw_records import HOUR, T0, S, raw_batch, raw_record

HOSTS = ["10.0.0.1", "::ffff:10.0.0.1", "10.0.0.2", "2001:db8::1", "2001:DB8:0::1", "192.0.2.9"]
EXPORTERS = ["192.0.2.1", "192.0.2.2", "::ffff:192.0.2.3", "2001:DB8::fe"]
flows = st.builds(
    lambda host, proto, second, octets, packets, rate, exporter: raw_record(
        src_addr=host,
        dst_addr="2001:db8::99" if ":" in host and "ffff" not in host else "198.51.100.1",
        proto=proto,
        time_flow_start_ns=T0 + second * S,
        time_flow_end_ns=T0 + second * S,
        bytes=octets,
        packets=packets,
        sampling_rate=rate,
        sampler_address=exporter,
        time_received_ns=HOUR.end_ns,
    ),
    st.sampled_from(HOSTS),
    st.sampled_from([6, 17, 1]),
    st.integers(0, 3599),
    st.integers(0, 2**44),
    st.integers(1, 2**20),
    st.sampled_from([0, 1, 16]),
    st.sampled_from(EXPORTERS),
)
COUNTS = itertools.count()


def _buckets(response: dict, name: str) -> dict:
    return {
        b.get("key_as_string", b["key"]): (b["doc_count"], int(b["bytes"]["value"]), int(b["packets"]["value"]))
        for b in response["aggregations"][name]["buckets"]
        if b["doc_count"]
    }


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(flows, min_size=1, max_size=200))
def test_summary_totals_equal_elasticsearch_aggregations(tmp_path, es_client, index_prefix, records):
    table = tmp_path / f"{next(COUNTS)}" / "flow_table" / "2021-10-28" / "03.parquet"
    with RowGroupWriter(table, FLOW_TABLE_SCHEMA, 64) as writer:
        result = normalize(raw_batch(*records), HOUR)
        writer.write(result.flows)
    assert result.flows.num_rows == len(records)
    index = f"{index_prefix}-summary-check-{next(COUNTS)}"
    es_client.indices.create(index=index, mappings={"dynamic": "strict", "properties": es_properties()})
    body = "".join(
        line for batch in read_batches(table) for line in encode_lines(batch, 0, "check-", "check").to_pylist()
    )
    assert not es_client.bulk(index=index, operations=body, refresh=True)["errors"]

    sums = {"bytes": {"sum": {"field": "network.bytes"}}, "packets": {"sum": {"field": "network.packets"}}}
    response = es_client.search(
        index=index,
        size=0,
        aggs={
            "top_source": {"terms": {"field": "source.ip", "size": 50}, "aggs": sums},
            "transport": {"terms": {"field": "network.transport", "size": 50}, "aggs": sums},
            "exporter": {"terms": {"field": "observer.ip", "size": 50}, "aggs": sums},
            "minute": {
                "date_histogram": {"field": "@timestamp", "fixed_interval": "1m", "format": "yyyy-MM-dd'T'HH:mmX"},
                "aggs": sums,
            },
        },
    )
    summary = summarize(table, HOUR).to_pylist()
    for kind in ("top_source", "transport", "exporter", "minute"):
        ours = {r["key"]: (r["flows"], r["bytes"], r["packets"]) for r in summary if r["kind"] == kind}
        assert ours == _buckets(response, kind), kind
    es_client.indices.delete(index=index)
