"""flow_summary's totals are exact at any size and never wrap."""

import pytest

from flows_pipeline.tables.flow_schema import FLOW_TABLE_SCHEMA
from flows_pipeline.tables.normalizer import normalize
from flows_pipeline.tables.row_groups import RowGroupWriter
from flows_pipeline.tables.summary import SummaryOverflowError, summarize
from flows_pipeline_tests.raw_records import HOUR, raw_batch, raw_record


def summary_of(tmp_path, *records, row_group_rows=2):
    path = tmp_path / "flow_table" / "2021-10-28" / "03.parquet"
    with RowGroupWriter(path, FLOW_TABLE_SCHEMA, row_group_rows) as writer:
        writer.write(normalize(raw_batch(*records), HOUR).flows)
    return {(r["kind"], r["key"]): (r["flows"], r["bytes"], r["packets"]) for r in summarize(path, HOUR).to_pylist()}


def test_totals_above_2_to_the_53_are_exact_across_batches(tmp_path):
    big = 2**53 + 1  # a double cannot hold it: a sum through float64 would be off by one
    rows = summary_of(tmp_path, *[raw_record(bytes=big) for _ in range(5)], raw_record(bytes=1))
    assert rows[("top_source", "10.0.0.1")] == (6, 5 * big + 1, 18)
    assert rows[("transport", "tcp")] == (6, 5 * big + 1, 18)


def test_a_total_beyond_64_bits_fails_naming_the_key_instead_of_wrapping(tmp_path):
    records = [raw_record(bytes=2**62) for _ in range(2)] + [raw_record(bytes=2**62, src_addr="10.0.0.2")]
    with pytest.raises(SummaryOverflowError, match=r"bytes of top_source 10\.0\.0\.1 add up to 9223372036854775808"):
        summary_of(tmp_path, *records)
