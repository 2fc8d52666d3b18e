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

from dagster import ConfigurableIOManager, InputContext, OutputContext
from pydantic import Field

from flows_pipeline.errors import TerminalError
from flows_pipeline.tables import table_store
from flows_pipeline.tables.table_store import TableLocation

STEP_VALUES = "step_values"


def run_values(root: TableLocation, run_id: str) -> TableLocation:
    """The folder (prefix) of one run's values under the storage root."""
    return table_store.join(root, STEP_VALUES, run_id)


class StepValueMissingError(TerminalError):
    """A step's input is not where the step upstream wrote it."""


class StepValues(ConfigurableIOManager):
    """Step values pickled under `<root>/step_values/`; the root is FLOWS_STORAGE_ROOT (s3://bucket/prefix).

    Raises StorageUnavailableError (transient: the step is retried) or StorageRefusedError (terminal)
    for the object store's failures, naming the object and the server's reason; StepValueMissingError
    for an input whose value is not there.
    """

    root: str = Field(description="FLOWS_STORAGE_ROOT: s3://bucket/prefix (or a folder)")

    def location(self, identifier: Sequence[str]) -> TableLocation:
        return table_store.join(run_values(table_store.normalized_root(self.root), identifier[0]), *identifier[1:])

    def handle_output(self, context: OutputContext, obj: object) -> None:
        if context.dagster_type.is_nothing:
            return
        table_store.write_bytes(self.location(context.get_identifier()), pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))

    def load_input(self, context: InputContext) -> object:
        if context.dagster_type.is_nothing:
            return None
        identifier = context.upstream_output.get_identifier()
        location = self.location(identifier)
        try:
            return pickle.loads(table_store.read_bytes(location))
        except FileNotFoundError:
            raise StepValueMissingError(
                f"the value of step {identifier[1]} of run {identifier[0]} is not at {location}: the run was "
                "deleted by the retention job, or FLOWS_STORAGE_ROOT changed since it ran; materialize the hour "
                "anew (a whole run, not a re-execution from failure)"
            ) from None
