"""A flow table damaged on disk is found before anything is published from it, whatever the damage."""

import hashlib
import shutil

import pyarrow.parquet as pq
import pytest

from flows_pipeline.es.chunk_plan import plan_chunks
from flows_pipeline.hour import hour_of
from flows_pipeline.sources.synthetic import synthetic_batches
from flows_pipeline.tables.flow_schema import FLOW_TABLE_SCHEMA
from flows_pipeline.tables.normalizer import normalize
from flows_pipeline.tables.row_groups import (
    CorruptTableError,
    RowGroupWriter,
    read_batches,
    verify_digest,
)
from flows_pipeline.tables.summary import summarize
from flows_pipeline.tables.table_store import digest_location

HOUR = hour_of("2021-10-28-03:00")


def flow_table(path, hour=HOUR, rows=5000):
    with RowGroupWriter(path, FLOW_TABLE_SCHEMA, 2000) as writer:
        for raw in synthetic_batches(hour, rows, 2500):
            writer.write(normalize(raw, hour).flows)
    return path


@pytest.fixture
def table(tmp_path):
    return flow_table(tmp_path / "flow_table" / "2021-10-28" / "03.parquet")


def test_a_written_table_has_its_digest_beside_it(table):
    sha256 = hashlib.sha256(table.read_bytes()).hexdigest()
    assert digest_location(table).read_text().strip() == sha256 == verify_digest(table)


def _flip_a_byte_that_still_decodes(table) -> None:
    """Change one byte of the bytes column's pages so that, unchecked, the table still reads, wrongly."""
    good = pq.read_table(table, columns=["network.bytes"])
    column = pq.ParquetFile(table).metadata.row_group(0).column(FLOW_TABLE_SCHEMA.get_field_index("network.bytes"))
    original = table.read_bytes()
    for offset in range(column.data_page_offset + column.total_compressed_size - 1, column.data_page_offset, -7):
        damaged = bytearray(original)
        damaged[offset] ^= 0x10
        table.write_bytes(bytes(damaged))
        try:
            unchecked = pq.read_table(table, columns=["network.bytes"], page_checksum_verification=False)
        except OSError:
            continue
        if not unchecked.equals(good):
            return
    pytest.fail("no single-byte change decoded into other values")


def test_damage_that_still_decodes_into_wrong_values_fails_the_read_naming_the_file(table):
    _flip_a_byte_that_still_decodes(table)
    with pytest.raises(CorruptTableError, match=r"flow_table/2021-10-28/03\.parquet.*re-materialize flow_table"):
        list(read_batches(table, columns=["network.bytes"]))
    with pytest.raises(CorruptTableError, match="SHA-256"):
        verify_digest(table)


def test_another_valid_table_put_in_its_place_is_not_indexed(tmp_path, table):
    other = flow_table(tmp_path / "other" / "04.parquet", hour_of("2021-10-28-04:00"))
    shutil.copy(other, table)  # a valid Parquet file, the wrong one: only the digest can tell
    with pytest.raises(CorruptTableError, match=r"03\.parquet is damaged .*SHA-256"):
        plan_chunks(table, 2, 32)
    with pytest.raises(CorruptTableError, match="SHA-256"):
        summarize(table, HOUR)


def test_a_table_without_its_digest_is_refused(table):
    digest_location(table).unlink()
    with pytest.raises(CorruptTableError, match=r"03\.parquet\.sha256"):
        plan_chunks(table, 2, 32)
