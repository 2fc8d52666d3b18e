"""The test suite's S3: s3proxy of its own in .s3/test, on a free port, started and stopped by its PID
with the project's scripts/s3proxy.sh (so `.ci/run`'s exit trap stops it whatever happened to the
session). Each test gets a prefix of its own in the bucket, as a table test gets its own tmp_path."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pyarrow.fs as pafs

from flows_pipeline.tables import table_store
from flows_pipeline.tables.table_store import TableLocation
from flows_pipeline_tests.support import PROJECT, run_script, script_exports

S3_SH = PROJECT / "scripts" / "s3proxy.sh"
TEST_SERVER = PROJECT / ".s3" / "test"


def java_found() -> bool:
    return shutil.which("java") is not None or Path("/usr/lib/jvm/temurin-25-jdk-amd64/bin/java").exists()


def s3_environment(folder: Path, port: int) -> dict[str, str]:
    """scripts/s3proxy.sh's environment for the server in `folder` on `port`."""
    return {**os.environ, "S3_DIR": str(folder), "S3_PORT": str(port)}


def s3_sh(folder: Path, port: int, *args: str) -> str:
    """Run scripts/s3proxy.sh on the server in `folder`; its output, or a failure with its last lines."""
    return run_script(S3_SH, *args, env=s3_environment(folder, port), timeout=300)


def s3_exports(folder: Path, port: int) -> dict[str, str]:
    """What `scripts/s3proxy.sh env` exports for that server: the storage root, endpoint, credentials."""
    return script_exports(S3_SH, s3_environment(folder, port), ("FLOWS_STORAGE_ROOT", "FLOWS_S3_ENDPOINT_URL", "AWS_"))


@dataclass(frozen=True)
class OwnS3:
    """A running s3proxy of scripts/s3proxy.sh; `env` is what `scripts/s3proxy.sh env` exports."""

    folder: Path
    port: int
    env: dict[str, str] = field(repr=False)  # holds AWS_SECRET_ACCESS_KEY: never in a test's report

    @classmethod
    def up(cls, folder: Path, port: int) -> OwnS3:
        """A fresh server in `folder` on `port`: one left running by an earlier session is stopped (by
        its PID) and its objects removed first."""
        s3_sh(folder, port, "stop")
        shutil.rmtree(folder / "data", ignore_errors=True)
        s3_sh(folder, port, "up")
        return cls(folder, port, s3_exports(folder, port))

    def stop(self) -> None:
        s3_sh(self.folder, self.port, "stop")

    def restart(self) -> None:
        """Start it again after `stop`, with the objects it had."""
        s3_sh(self.folder, self.port, "up")

    def new_root(self) -> str:
        """An s3:// root nothing else writes under."""
        return f"{self.env['FLOWS_STORAGE_ROOT']}/{uuid.uuid4().hex[:12]}"

    @contextmanager
    def environment(self, **overrides: str) -> Iterator[None]:
        """This server's settings in os.environ, which every S3 request reads (table_store.py), with
        `overrides`; the cached file system is dropped on the way in and out, so the SDK reads them anew."""
        table_store._s3.cache_clear()
        try:
            with mock.patch.dict(os.environ, {**self.env, **overrides}):
                yield
        finally:
            table_store._s3.cache_clear()


def stored_files(root: TableLocation) -> list[str]:
    """Every file (object) under `root`, a local folder or "s3://bucket/prefix", relative to it, sorted."""
    filesystem, prefix = table_store.resolve(root)
    found = filesystem.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return sorted(info.path[len(prefix) + 1 :] for info in found if info.type == pafs.FileType.File)
