"""Tables on S3 (the suite's own s3proxy): a write that fails half way publishes nothing and leaves the
previous table as it was; what the server refuses or cannot do is named, credentials never; retention
deletes the expired hours' objects, as it deletes their local files."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import timedelta
from unittest import mock

import pyarrow as pa
import pytest

from flows_pipeline.errors import ConfigurationError
from flows_pipeline.hour import Hour, hour_of
from flows_pipeline.sources.synthetic import synthetic_batches
from flows_pipeline.tables import table_store
from flows_pipeline.tables.flow_schema import FLOW_TABLE_SCHEMA
from flows_pipeline.tables.normalizer import normalize
from flows_pipeline.tables.retention import delete_expired_tables
from flows_pipeline.tables.row_groups import RowGroupWriter, parquet_metadata, read_batches, verify_digest
from flows_pipeline.tables.table_store import (
    S3Settings,
    StorageRefusedError,
    StorageUnavailableError,
    TableSink,
)
from flows_pipeline_tests.s3 import OwnS3, stored_files
from flows_pipeline_tests.support import free_port

HOUR = hour_of("2021-10-28-03:00")
ROW_GROUP_ROWS = 1_000


class WriteFailed(RuntimeError):
    pass


def flows(rows: int, fail_after: int | None = None, check=None) -> Iterator[pa.RecordBatch]:
    """The hour's flows in batches of 500; WriteFailed once `fail_after` rows were given (after `check`)."""
    given = 0
    for raw in synthetic_batches(HOUR, rows, 500):
        if fail_after is not None and given >= fail_after:
            if check:
                check()
            raise WriteFailed("the source broke off")
        batch = normalize(raw, HOUR).flows
        given += batch.num_rows
        yield batch


def write_flow_table(location, batches) -> RowGroupWriter:
    with RowGroupWriter(location, FLOW_TABLE_SCHEMA, ROW_GROUP_ROWS) as writer:
        for batch in batches:
            writer.write(batch)
    return writer


def test_the_s3_settings_come_from_the_environment_and_a_wrong_one_is_named():
    assert S3Settings.from_env({}) == S3Settings(endpoint_url=None, region=None)  # AWS S3, the SDK's region
    assert S3Settings.from_env({"AWS_ENDPOINT_URL": "http://127.0.0.1:9300/"}) == S3Settings(
        "http://127.0.0.1:9300", "us-east-1"
    )
    both = {
        "FLOWS_S3_ENDPOINT_URL": "https://minio.example:9000",
        "AWS_ENDPOINT_URL": "http://other",
        "AWS_REGION": "eu",
    }
    assert S3Settings.from_env(both) == S3Settings("https://minio.example:9000", "eu")
    with pytest.raises(ConfigurationError, match=r"FLOWS_S3_ENDPOINT_URL='minio:9000': expected http\(s\)://"):
        S3Settings.from_env({"FLOWS_S3_ENDPOINT_URL": "minio:9000"})
    with pytest.raises(ConfigurationError, match="FLOWS_STORAGE_ROOT='s3://'"):
        table_store.normalized_root("s3://")
    root = table_store.normalized_root("s3://flows/tables/")
    assert (
        table_store.join(root, "flow_table", "2021-10-28", "03.parquet")
        == "s3://flows/tables/flow_table/2021-10-28/03.parquet"
    )


@pytest.mark.parametrize(
    ("reason", "kind", "advice"),
    [
        ("AWS Error ACCESS_DENIED during HeadObject operation: Forbidden", StorageRefusedError, "AWS_ACCESS_KEY_ID"),
        ("AWS Error NO_SUCH_BUCKET during PutObject operation", StorageRefusedError, "FLOWS_STORAGE_ROOT"),
        ("AWS Error UNKNOWN (HTTP status 501) during UploadPart operation: NotImplemented", StorageRefusedError,
         "AWS_REQUEST_CHECKSUM_CALCULATION=when_required"),
        ("AWS Error SLOW_DOWN (HTTP status 503) during PutObject operation", StorageUnavailableError, "retried"),
        ("AWS Error UNKNOWN (HTTP status 429) during GetObject operation", StorageUnavailableError, "retried"),
        ("AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 7", StorageUnavailableError, "retried"),
    ],
)  # fmt: skip
def test_a_failed_request_is_terminal_or_transient_by_the_servers_reason_and_says_what_to_do(reason, kind, advice):
    location = "s3://flows/tables/flow_table/2021-10-28/03.parquet"
    secret = "a-secret-that-must-not-show"
    with mock.patch.dict(os.environ, {"AWS_SECRET_ACCESS_KEY": secret}):
        error = table_store.storage_error(location, "reading", OSError(f"{reason} {secret}"))
    assert type(error) is kind
    assert location in str(error) and reason in str(error) and advice in str(error)
    assert secret not in str(error) and "<AWS_SECRET_ACCESS_KEY>" in str(error)


@pytest.fixture
def s3(own_s3: OwnS3) -> Iterator[OwnS3]:
    with own_s3.environment():
        yield own_s3


def test_a_table_is_written_to_s3_read_back_and_its_digest_is_what_the_bucket_holds(s3: OwnS3):
    root = s3.new_root()
    table = f"{root}/flow_table/2021-10-28/03.parquet"
    writer = write_flow_table(table, flows(4_000))

    assert stored_files(root) == ["flow_table/2021-10-28/03.parquet", "flow_table/2021-10-28/03.parquet.sha256"]
    assert parquet_metadata(table).num_rows == writer.rows == 4_000
    assert parquet_metadata(table).num_row_groups == 4
    assert sum(b.num_rows for b in read_batches(table, batch_rows=300, row_groups=[1, 2])) == 2_000
    filesystem, key = table_store.resolve(table)
    with filesystem.open_input_stream(key) as stream:
        stored = hashlib.sha256(stream.read()).hexdigest()
    assert writer.digest == stored == verify_digest(table)


def test_a_write_failing_half_way_publishes_nothing_and_keeps_the_previous_table(s3: OwnS3):
    root = s3.new_root()
    table = f"{root}/flow_table/2021-10-28/03.parquet"
    fresh = f"{root}/flow_table/2021-10-28/04.parquet"
    previous = write_flow_table(table, flows(2_000))

    seen: dict[str, object] = {}

    def while_writing() -> None:  # 3 row groups are in the upload by now: what do readers see?
        seen["keys"] = stored_files(root)
        seen["size"] = table_store.size(table)

    with pytest.raises(WriteFailed):
        write_flow_table(table, flows(6_000, fail_after=3_500, check=while_writing))
    with pytest.raises(WriteFailed):
        write_flow_table(fresh, flows(6_000, fail_after=3_500))

    # during the write: the old table, as it was (an upload under way is no object yet)
    old = ["flow_table/2021-10-28/03.parquet", "flow_table/2021-10-28/03.parquet.sha256"]
    assert seen == {"keys": old, "size": table_store.size(table)}
    # after it: the temporaries are gone, the new key was never created, the old table is intact
    assert stored_files(root) == old
    assert table_store.size(fresh) is None
    assert verify_digest(table) == previous.digest
    assert parquet_metadata(table).num_rows == 2_000


def test_the_server_going_away_during_an_upload_is_transient_names_the_table_and_publishes_nothing(s3: OwnS3):
    """A real failure of the upload itself: s3proxy stopped (by its PID) part way through a table's
    bytes, before its first part (pyarrow's 10 MB) is sent."""
    table = f"{s3.new_root()}/flow_table/2021-10-28/03.parquet"
    sink = TableSink(table)
    sink.where.write(b"PAR1" + bytes(6 * 2**20))
    s3.stop()
    try:
        with pytest.raises(StorageUnavailableError) as failed:
            sink.where.write(bytes(6 * 2**20))  # the part is full: its upload is tried now
        sink.abort()
    finally:
        s3.restart()
    assert "uploading s3://" in str(failed.value) and "flow_table/2021-10-28/03.parquet" in str(failed.value)
    assert stored_files(table.rsplit("/", 3)[0]) == []


def test_a_small_table_failing_while_written_leaves_no_object(s3: OwnS3):
    location = f"{s3.new_root()}/flow_summary/2021-10-28/03.parquet"
    sink = TableSink(location)
    sink.where.write(b"PAR1 half a table")
    sink.abort()
    assert table_store.size(location) is None and stored_files(location.rsplit("/", 1)[0]) == []


def test_wrong_credentials_are_refused_naming_the_object_and_never_the_secret(own_s3: OwnS3):
    secret = "not-the-secret-" + "x" * 20
    table = f"{own_s3.new_root()}/flow_table/2021-10-28/03.parquet"
    with own_s3.environment(AWS_SECRET_ACCESS_KEY=secret), pytest.raises(StorageRefusedError) as refused:
        write_flow_table(table, flows(1_000))
    message = str(refused.value)
    assert table.removeprefix("s3://").split("/")[0] in message and "03.parquet" in message
    assert "FLOWS_S3_ENDPOINT_URL" in message and secret not in message
    assert own_s3.env["AWS_SECRET_ACCESS_KEY"] not in message
    assert own_s3.env["AWS_SECRET_ACCESS_KEY"] not in repr(S3Settings.from_env(own_s3.env))
    with own_s3.environment():  # what pickling pyarrow's file system would carry: no credential (the SDK reads them)
        filesystem, _ = table_store.resolve(table)
        assert own_s3.env["AWS_SECRET_ACCESS_KEY"] not in repr(filesystem.__reduce__())


def test_an_unreachable_endpoint_is_transient_and_named(own_s3: OwnS3):
    endpoint = f"http://127.0.0.1:{free_port()}"
    with own_s3.environment(FLOWS_S3_ENDPOINT_URL=endpoint), pytest.raises(StorageUnavailableError) as failed:
        table_store.size(f"{own_s3.new_root()}/flow_table/2021-10-28/03.parquet")
    assert endpoint in str(failed.value) and "03.parquet" in str(failed.value)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def any_root(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A storage root of each kind: a local folder, and a prefix on the suite's S3."""
    if request.param == "local":
        yield str(tmp_path / "tables")
        return
    server: OwnS3 = request.getfixturevalue("own_s3")
    with server.environment():
        yield server.new_root()


def test_retention_deletes_the_expired_hours_files_with_their_digests_and_nothing_else(any_root: str):
    root = table_store.normalized_root(any_root)
    hours = [Hour(HOUR.start + timedelta(hours=h)) for h in (0, 1, 25)]  # two on the 28th, one on the 29th
    for hour in hours:
        for asset in ("flow_table", "flow_quarantine"):
            write_flow_table(
                table_store.join(root, asset, f"{hour.start:%Y-%m-%d}", f"{hour.start:%H}.parquet"), flows(100)
            )
    # the 28th's hours are expired, the 29th's is not
    deleted = delete_expired_tables(root, ["flow_table", "flow_quarantine"], cutoff=hours[2].start)

    assert deleted.files == 4 and deleted.hours == {hours[0].key, hours[1].key}
    assert deleted.bytes > 0
    assert stored_files(root) == [
        f"{asset}/2021-10-29/04.parquet{suffix}"
        for asset in ("flow_quarantine", "flow_table")
        for suffix in ("", ".sha256")
    ]
    days = [info.path.rsplit("/", 1)[-1] for info in table_store.listing(table_store.join(root, "flow_table"))]
    assert days == ["2021-10-29"]  # the emptied day's folder went too
    assert verify_digest(table_store.join(root, "flow_table", "2021-10-29", "04.parquet"))
