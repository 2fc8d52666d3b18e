"""Where tables live: a local folder or an S3 bucket, and writes no reader ever sees half done.

A table's location is a `Path` (a local file) or a string `s3://bucket/key` (an object on
S3-compatible storage, FLOWS_STORAGE_ROOT=s3://bucket/prefix). Everything that reads or writes a
table takes a location and lets this module pick the file system: pyarrow's own `S3FileSystem`
for S3 (the AWS C++ SDK underneath: signing, retries, multipart uploads), plain files otherwise.

S3's settings come from the environment of each process, as the AWS SDKs read them: the endpoint
(FLOWS_S3_ENDPOINT_URL, else AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL; AWS's own by default), the
region (AWS_REGION or AWS_DEFAULT_REGION) and the credentials (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, or the SDK's other sources: profile, instance role).
No object of the project holds a credential (they are looked up only to blank them out of an
error's message): nothing to print, log, pickle into a step's inputs or show in Dagster's metadata.

Commit protocol. A local table is written to a temporary file beside it and renamed into place.
S3 has no rename, and pyarrow's `open_output_stream` completes the upload even when an exception
ends the `with` block, publishing whatever was written (apache/arrow#40502, open; no abort is
exposed). So an S3 table is written under a temporary key `<key>.tmp-<uuid>`; once complete, its
size is checked against the bytes sent (a HEAD), its SHA-256 (computed while streaming) is
recorded, and it is copied into place by one server-side CopyObject, which makes the new object
visible whole or not at all, then the temporary is deleted. A failed write deletes its temporary;
the key keeps its previous object. Every later reader checks the recorded SHA-256 against the
bytes it reads before anything is published from them (row_groups.verify_digest).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from flows_pipeline.errors import ConfigurationError, TerminalError, TransientError

TableLocation = Path | str  # a local file, or "s3://bucket/key"
S3_SCHEME = "s3://"
READ_BLOCK_BYTES = 8 * 2**20  # what a digest over an object holds at once


def is_s3(location: TableLocation) -> bool:
    return str(location).startswith(S3_SCHEME)


def join(root: TableLocation, *parts: str) -> TableLocation:
    """`root`/`parts`: a Path under a local root, a URI under an S3 one."""
    if is_s3(root):
        return "/".join([str(root).rstrip("/"), *parts])
    return Path(root).joinpath(*parts)


def normalized_root(root: str) -> TableLocation:
    """The storage root as configured: an absolute folder, or `s3://bucket[/prefix]` without a trailing slash.

    Raises ConfigurationError for an S3 root without a bucket.
    """
    if not is_s3(root):
        return Path(root).resolve()
    if not root[len(S3_SCHEME) :].strip("/"):
        raise ConfigurationError(f"FLOWS_STORAGE_ROOT={root!r}: expected s3://bucket or s3://bucket/prefix")
    return root.rstrip("/")


@dataclass(frozen=True)
class S3Settings:
    """Where the S3 API is and which region to sign for; never credentials (the SDK reads those)."""

    endpoint_url: str | None  # e.g. http://127.0.0.1:9300; None: AWS's endpoint for the region
    region: str | None  # None: the SDK finds it (profile, instance metadata)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> S3Settings:
        """Raises ConfigurationError for an endpoint that is not an http(s) URL."""
        variable = next(
            (v for v in ("FLOWS_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL") if environ.get(v)), None
        )
        endpoint = environ[variable].rstrip("/") if variable else None
        if endpoint and not re.fullmatch(r"https?://[^/\s]+", endpoint):
            raise ConfigurationError(
                f"{variable}={endpoint!r}: expected http(s)://host[:port], e.g. http://127.0.0.1:9300"
            )
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        # another S3-compatible server signs with a region too; us-east-1 is what they accept by default
        return cls(endpoint_url=endpoint, region=region or ("us-east-1" if endpoint else None))


@functools.lru_cache(maxsize=4)
def _s3(settings: S3Settings) -> pafs.S3FileSystem:
    # background_writes off: each part (pyarrow's 10 MB) is sent before the writer goes on, so a step
    # holds one part whatever the upload's speed; in the background, parts not yet sent wait in memory
    # and nothing we can configure bounds how many. allow_delayed_open: an object under one part (a
    # summary, a quarantine, a digest) is one PutObject, not a multipart upload of three requests
    options: dict = {"region": settings.region, "background_writes": False, "allow_delayed_open": True}
    if settings.endpoint_url:
        scheme, host = settings.endpoint_url.split("://", 1)
        options |= {"scheme": scheme, "endpoint_override": host}
    return pafs.S3FileSystem(**options)


def resolve(location: TableLocation) -> tuple[pafs.FileSystem, str]:
    """The file system and its path for `location`: ("bucket/key" on S3, the file's path locally)."""
    text = str(location)
    if is_s3(text):
        return _s3(S3Settings.from_env()), text[len(S3_SCHEME) :]
    return pafs.LocalFileSystem(), text


class StorageRefusedError(TerminalError):
    """The object store refused a request a retry cannot change: access denied, no such bucket, not implemented."""


class StorageUnavailableError(TransientError):
    """The object store could not be reached or failed for now: connection refused or reset, 5xx, throttled."""


class TableCommitError(TerminalError):
    """A table's temporary object is not what was written (size differs): nothing was published."""


_REFUSALS = ("ACCESS_DENIED", "NO_SUCH_BUCKET", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH", "HTTP status 4")
_PASSING = ("HTTP status 408", "HTTP status 429", "SLOW_DOWN", "THROTTLING")  # 4xx that a later try can pass
_SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")


def _without_secrets(text: str) -> str:
    """`text` with any credential of the environment blanked: the SDK's messages carry none, but an
    error message is the one place a stray one would be shown, so it is checked."""
    for variable in _SECRET_VARIABLES:
        secret = os.environ.get(variable)
        if secret and len(secret) >= 8:
            text = text.replace(secret, f"<{variable}>")
    return text


def storage_error(location: TableLocation, action: str, err: OSError) -> Exception:
    """The project's error for an S3 request that failed: terminal or transient, naming the object,
    the server's reason and what to do. A missing object stays FileNotFoundError (callers decide)."""
    if isinstance(err, FileNotFoundError):
        return err
    reason = _without_secrets(str(err))
    where = f"{action} {location}"
    if "HTTP status 501" in reason or "NotImplemented" in reason or "Failed to flush response stream" in reason:
        return StorageRefusedError(
            f"{where}: the server does not implement a request of the AWS SDK ({reason}); S3-compatible servers "
            "that do not implement the SDK's default checksums (s3proxy 2.7 does not) need "
            "AWS_REQUEST_CHECKSUM_CALCULATION=when_required and AWS_RESPONSE_CHECKSUM_VALIDATION=when_required"
        )
    if any(code in reason for code in _REFUSALS) and not any(code in reason for code in _PASSING):
        return StorageRefusedError(
            f"{where}: refused ({reason}); check the bucket in FLOWS_STORAGE_ROOT, the endpoint "
            "(FLOWS_S3_ENDPOINT_URL), the region (AWS_REGION), the credentials (AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY) and their permissions, then re-run"
        )
    return StorageUnavailableError(
        f"{where}: failed ({reason}); retried with backoff: if it lasts, check that the storage at "
        f"{S3Settings.from_env().endpoint_url or 'AWS S3'} is reachable"
    )


@contextmanager
def s3_errors(location: TableLocation, action: str) -> Iterator[None]:
    """Inside: an OSError of an S3 location becomes storage_error's; local ones pass unchanged."""
    try:
        yield
    except OSError as err:
        if not is_s3(location):
            raise
        raise storage_error(location, action, err) from err


def size(location: TableLocation) -> int | None:
    """Bytes of the table, or None when there is none."""
    filesystem, path = resolve(location)
    with s3_errors(location, "reading the size of"):
        info = filesystem.get_file_info(path)
    return info.size if info.type == pafs.FileType.File else None


def read_text(location: TableLocation) -> str:
    """A small text object (a recorded digest); FileNotFoundError when there is none."""
    return read_bytes(location).decode()


def read_bytes(location: TableLocation) -> bytes:
    """A small object, whole (a digest, a step's value); FileNotFoundError when there is none."""
    filesystem, path = resolve(location)
    with s3_errors(location, "reading"), filesystem.open_input_stream(path) as stream:
        return stream.read()


def sha256(location: TableLocation) -> str:
    """The SHA-256 of the table's bytes, read READ_BLOCK_BYTES at a time; FileNotFoundError when missing."""
    filesystem, path = resolve(location)
    digest = hashlib.sha256()
    with s3_errors(location, "reading"), filesystem.open_input_stream(path) as stream:
        while block := stream.read(READ_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def open_for_reading(location: TableLocation) -> str | pa.NativeFile:
    """What pyarrow's Parquet reader opens: the local path itself, or a random-access S3 object
    (the footer, then each column chunk, are ranged GETs)."""
    if not is_s3(location):
        return str(location)
    filesystem, path = resolve(location)
    with s3_errors(location, "opening"):
        return filesystem.open_input_file(path)


def delete(location: TableLocation) -> None:
    """Delete the table if it exists."""
    filesystem, path = resolve(location)
    with s3_errors(location, "deleting"), contextlib.suppress(FileNotFoundError):
        filesystem.delete_file(path)


def delete_folder(folder: TableLocation) -> int:
    """Delete `folder` and everything under it (on S3: every object of the prefix); the bytes freed, 0 if
    there was nothing. On S3 one DeleteObject per object, as retention deletes tables: pyarrow's
    `delete_dir` sends DeleteObjects, which not every S3-compatible server implements (s3proxy 2.7's
    filesystem backend answers INTERNAL_FAILURE)."""
    filesystem, path = resolve(folder)
    with s3_errors(folder, "deleting"):
        found = filesystem.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        freed = sum(info.size or 0 for info in found if info.type == pafs.FileType.File)
        if not is_s3(folder):
            with contextlib.suppress(FileNotFoundError):
                filesystem.delete_dir(path)
            return freed
        # the objects, then what may be left of the folders: `<prefix>/` markers, deepest first
        objects = [info.path for info in found if info.type == pafs.FileType.File]
        markers = [f"{info.path}/" for info in found if info.type == pafs.FileType.Directory] + [f"{path}/"]
        for key in objects + sorted(markers, key=lambda m: -m.count("/")):
            with contextlib.suppress(FileNotFoundError):
                filesystem.delete_file(key)
    return freed


def listing(folder: TableLocation) -> list[pafs.FileInfo]:
    """The entries directly in `folder` (files and folders; S3's common prefixes are folders); [] if none."""
    filesystem, path = resolve(folder)
    with s3_errors(folder, "listing"):
        return filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))


def remove_folder_if_empty(folder: TableLocation) -> None:
    """Remove `folder` once nothing is left in it. On S3 a folder is a prefix, gone with its last
    object, but for a `<prefix>/` marker object (pyarrow makes them, so may a server's filesystem
    backend): that is what is deleted there."""
    if listing(folder):
        return
    filesystem, path = resolve(folder)
    with s3_errors(folder, "deleting the folder"), contextlib.suppress(FileNotFoundError):
        if is_s3(folder):
            filesystem.delete_file(f"{path}/")
        else:
            filesystem.delete_dir(path)


def write_text(location: TableLocation, text: str) -> None:
    """A small text object, whole: one PUT, done before anything could fail half way."""
    write_bytes(location, text.encode())


def write_bytes(location: TableLocation, data: bytes) -> None:
    """A small object (under one part, pyarrow's 10 MB), whole: the bytes are all in hand before the one
    PUT starts, so no failure half way can publish part of them (apache/arrow#40502 needs a failure
    inside the stream). Locally, a temporary file renamed into place."""
    filesystem, path = resolve(location)
    if not is_s3(location):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(f"{path}.tmp-{uuid.uuid4().hex}")
        try:
            temporary.write_bytes(data)
            temporary.replace(path)
        finally:
            temporary.unlink(missing_ok=True)  # left only by a failed write
        return
    with s3_errors(location, "writing"), filesystem.open_output_stream(path) as stream:
        stream.write(data)


class _HashingWriter:
    """A file object over an S3 output stream that counts and hashes the bytes as they pass; a part
    that fails to upload raises the storage errors above (pyarrow's writer passes them on as raised)."""

    def __init__(self, stream: pa.NativeFile, location: TableLocation) -> None:
        self.stream = stream
        self.location = location
        self.size = 0
        self.digest = hashlib.sha256()
        self.closed = False

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        with s3_errors(self.location, "uploading"):
            self.stream.write(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def close(self) -> None:  # the Parquet writer's close; the upload itself ends in commit or abort
        pass

    def writable(self) -> bool:
        return True


class TableSink:
    """Where one table's bytes go until they are complete, then appear under `location` at once.

    `where` is what pyarrow's Parquet writers write into. `commit()` publishes (and returns the
    SHA-256 when `digest` is set: then it is also recorded at `<location>.sha256`); `abort()`
    removes every trace of the attempt and leaves a previous table at `location` as it was.
    """

    def __init__(self, location: TableLocation) -> None:
        self.location = location
        self._s3 = is_s3(location)
        if self._s3:
            self._filesystem, self._key = resolve(location)
            self._tmp_key = f"{self._key}.tmp-{uuid.uuid4().hex}"
            with s3_errors(location, "starting the upload of"):
                self._writer = _HashingWriter(self._filesystem.open_output_stream(self._tmp_key), location)
            self.where: str | _HashingWriter = self._writer
        else:
            path = Path(location)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            self.where = str(self._tmp)

    def commit(self, digest: bool = False) -> str:
        """Publish the table; its SHA-256 if `digest`, else "". Raises TableCommitError (S3) when the
        stored temporary's size is not what was written; the storage errors above otherwise."""
        return self._commit_s3(digest) if self._s3 else self._commit_local(digest)

    def abort(self) -> None:
        """Drop the attempt; never raises for the cleanup itself (the write's own error matters)."""
        if not self._s3:
            self._tmp.unlink(missing_ok=True)
            digest_location(self._tmp).unlink(missing_ok=True)
            return
        # pyarrow has no abort (apache/arrow#40502): closing completes the upload of the partial
        # temporary, which is then deleted; it never was at the table's key. An upload that cannot
        # complete leaves no object (a bucket rule expires incomplete multipart uploads).
        with contextlib.suppress(OSError):
            self._writer.stream.close()
        # a temporary left behind is never read: readers open exact keys
        with contextlib.suppress(OSError):
            self._filesystem.delete_file(self._tmp_key)

    def _commit_local(self, digest: bool) -> str:
        path, recorded = Path(self.location), ""
        # a crash between the two renames leaves a table and a digest that disagree: verification
        # reports it (re-materialize), it never passes a table whose bytes were not the ones digested
        if digest:
            recorded = sha256(self._tmp)
            digest_tmp = digest_location(self._tmp)
            digest_tmp.write_text(recorded + "\n")
            os.replace(digest_tmp, digest_location(path))
        os.replace(self._tmp, path)
        return recorded

    def _commit_s3(self, digest: bool) -> str:
        temporary = f"{S3_SCHEME}{self._tmp_key}"
        try:
            with s3_errors(temporary, "completing the upload of"):
                self._writer.stream.close()
            stored = size(temporary)
            if stored != self._writer.size:
                raise TableCommitError(
                    f"{temporary} holds {stored} bytes after its upload, {self._writer.size} were written: nothing "
                    f"was published at {self.location}; re-materialize the hour (a retry writes it again)"
                )
            recorded = self._writer.digest.hexdigest()
            if digest:
                write_text(digest_location(self.location), recorded + "\n")
            with s3_errors(self.location, f"copying {temporary} to"):
                self._filesystem.copy_file(self._tmp_key, self._key)
        except BaseException:
            self.abort()
            raise
        with contextlib.suppress(OSError):  # the table is in place; a temporary left behind is never read
            self._filesystem.delete_file(self._tmp_key)
        return recorded if digest else ""


def digest_location(location: TableLocation) -> TableLocation:
    """Where a table's recorded SHA-256 is: `<location>.sha256`."""
    return f"{location}.sha256" if is_s3(location) else Path(f"{location}.sha256")
