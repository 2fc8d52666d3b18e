"""The values steps pass each other, where every worker can read them: Dagster's IO manager for tables on S3.

A run's steps exchange descriptors, never rows: plan_index_chunks's ChunkTasks (a table location and
a range of row groups) and index_chunk's ChunkResults (counts, reasons), a few KB each. On one
machine Dagster's own `fs_io_manager` pickles them under DAGSTER_HOME/storage/<run id>/. With tables on
S3 (FLOWS_STORAGE_ROOT=s3://bucket/prefix) steps may run on celery workers that share no disk with the
run (README, "Several workers"), so this IO manager pickles them beside the tables instead:

    <root>/step_values/<run id>/<step key>/<output name>[/<mapping key>]

through the tables' own S3 file system (tables/table_store.py: endpoint, region and credentials from
each process's environment, never in the pickles). A value is written whole in one PUT, so a reader
sees all of it or none. A re-execution (the daemon's run retries, a "from failure" re-run in the UI)
reads the values of the steps it does not run again from the parent run's folder, as `fs_io_manager`
does: the identifier names the run that made the value. The run retention deletes a run's folder
with the run (orchestration/run_retention.py).

A value of an asset (raw_flows, flow_table, flow_summary) is None: their tables are the data, written
by the assets themselves, and downstream assets depend on them without loading a value.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

from dagster import ConfigurableIOManager, DagsterInstance, DagsterRun, InputContext, OutputContext
from pydantic import Field

from flows_pipeline.errors import TerminalError
from flows_pipeline.orchestration.failures import retry_only_transient_errors
from flows_pipeline.tables import table_store
from flows_pipeline.tables.table_store import TableLocation

STEP_VALUES = "step_values"


def run_values(root: TableLocation, run_id: str) -> TableLocation:
    """The folder (prefix) of one run's values under the storage root."""
    return table_store.join(root, STEP_VALUES, run_id)


class StepValueMissingError(TerminalError):
    """A step's input is not where the step upstream wrote it."""


class _FailingStep:
    """The instance and run of the step an IO manager works for (failures.StepContext), looked up only
    when a failure is tagged: a context built outside a run (a test's) has none."""

    def __init__(self, context: InputContext | OutputContext) -> None:
        self._context = context

    @property
    def instance(self) -> DagsterInstance:
        return self._context.step_context.instance

    @property
    def run(self) -> DagsterRun:
        return self._context.step_context.dagster_run


class StepValues(ConfigurableIOManager):
    """Step values pickled under `<root>/step_values/`; the root is FLOWS_STORAGE_ROOT (s3://bucket/prefix).

    The object store's failures end the step as the step's own would (orchestration/failures.py):
    StorageUnavailableError is transient (a chunk step's retry policy, or the daemon's run retry),
    StorageRefusedError and StepValueMissingError are terminal; each names the object and the reason.
    (Dagster calls an IO manager outside the step's body, so the body's own error handling does not apply.)
    """

    root: str = Field(description="FLOWS_STORAGE_ROOT: s3://bucket/prefix (or a folder)")

    def location(self, identifier: Sequence[str]) -> TableLocation:
        return table_store.join(run_values(table_store.normalized_root(self.root), identifier[0]), *identifier[1:])

    def write(self, identifier: Sequence[str], value: object) -> None:
        table_store.write_bytes(self.location(identifier), pickle.dumps(value, pickle.HIGHEST_PROTOCOL))

    def read(self, identifier: Sequence[str]) -> object:
        """The value; StepValueMissingError when there is none."""
        location = self.location(identifier)
        try:
            return pickle.loads(table_store.read_bytes(location))
        except FileNotFoundError:
            raise StepValueMissingError(
                f"the value of step {identifier[1]} of run {identifier[0]} is not at {location}: the run was "
                "deleted by the retention job, or FLOWS_STORAGE_ROOT changed since it ran; materialize the hour "
                "anew (a whole run, not a re-execution from failure)"
            ) from None

    def handle_output(self, context: OutputContext, obj: object) -> None:
        if context.dagster_type.is_nothing:
            return
        with retry_only_transient_errors(_FailingStep(context), f"storing the value of step {context.step_key}"):
            self.write(context.get_identifier(), obj)

    def load_input(self, context: InputContext) -> object:
        if context.dagster_type.is_nothing:
            return None
        identifier = context.upstream_output.get_identifier()
        with retry_only_transient_errors(_FailingStep(context), f"reading the value of step {identifier[1]}"):
            return self.read(identifier)
