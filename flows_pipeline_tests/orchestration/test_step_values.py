"""The IO manager for tables on S3 (step_values.py): a step's value is an object under
<root>/step_values/<run id>/<step key>/<output>[/<mapping key>], read back by the step downstream and by a
re-execution from the run that made it; a value of type Nothing is neither written nor read."""

from __future__ import annotations

import os
from unittest import mock

import pytest
from dagster import Any, DagsterInstance, Nothing, build_input_context, build_output_context, job, op
from dagster._core.types.dagster_type import resolve_dagster_type

from flows_pipeline.es.chunk_plan import ChunkSpec
from flows_pipeline.orchestration.failures import FAILURE_KIND_TAG
from flows_pipeline.orchestration.step_values import StepValueMissingError, StepValues
from flows_pipeline.tables import table_store
from flows_pipeline_tests.s3 import stored_files
from flows_pipeline_tests.support import free_port

DUMMY_KEYS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def root(request, tmp_path):
    """A storage root: a folder, or a fresh prefix of the suite's s3proxy with its settings in os.environ."""
    if request.param == "local":
        yield str(tmp_path / "tables")
        return
    own_s3 = request.getfixturevalue("own_s3")
    with own_s3.environment():
        yield own_s3.new_root()


ANY = resolve_dagster_type(Any)


def _output(run_id: str, step_key: str, name: str = "result", mapping_key: str | None = None, dagster_type=ANY):
    """Used in a `with`: a context builds an ephemeral instance, closed on the way out."""
    return build_output_context(
        run_id=run_id, step_key=step_key, name=name, mapping_key=mapping_key, dagster_type=dagster_type
    )


def _input(upstream, dagster_type=ANY):
    return build_input_context(upstream_output=upstream, dagster_type=dagster_type)


def test_a_value_is_read_back_from_the_run_that_made_it_and_nothing_is_not_stored(root):
    values = StepValues(root=root)
    table = "s3://flows/t/flow_table/2021-10-28/03.parquet"
    chunk = ChunkSpec(table_path=table, first_row_group=0, row_group_count=2, first_row=0, rows=1000)
    with _output("run-1", "flow_index.plan_index_chunks", mapping_key="rows_0_1000") as made:
        values.handle_output(made, chunk)
        assert stored_files(root) == ["step_values/run-1/flow_index.plan_index_chunks/result/rows_0_1000"]
        # the step downstream, in the same run or in a re-execution of it (which reads run-1's value)
        with _input(made) as downstream:
            assert values.load_input(downstream) == chunk

    nothing = resolve_dagster_type(Nothing)
    with _output("run-1", "flow_index.publish_flow_index", dagster_type=nothing) as made:
        values.handle_output(made, None)
        assert len(stored_files(root)) == 1
        with _input(made, nothing) as downstream:
            assert values.load_input(downstream) is None


def test_a_missing_value_fails_naming_the_step_the_run_and_what_to_do(root):
    values = StepValues(root=root)
    with pytest.raises(StepValueMissingError) as missing:
        values.read(["run-9", "flow_index.plan_index_chunks", "result"])
    assert "step flow_index.plan_index_chunks of run run-9" in str(missing.value)
    assert "materialize the hour anew" in str(missing.value)
    assert table_store.delete_folder(table_store.join(table_store.normalized_root(root), "step_values", "run-9")) == 0


@op
def _descriptor() -> int:
    return 1


@op
def _consumer(value: int) -> int:
    return value


@job
def _two_steps():
    _consumer(_descriptor())


def test_storage_unreachable_for_a_value_ends_the_step_as_transient_for_the_daemons_run_retry(tmp_path):
    """Dagster calls an IO manager outside the step's body: its errors get the same split as the body's
    (failures.py): an unreachable store is transient, the run tagged for the daemon's retry."""
    with (
        mock.patch.dict(os.environ, {"FLOWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", **DUMMY_KEYS}),
        DagsterInstance.ephemeral() as instance,
    ):
        table_store._s3.cache_clear()
        try:
            result = _two_steps.execute_in_process(
                instance=instance, resources={"io_manager": StepValues(root="s3://flows/t")}, raise_on_error=False
            )
        finally:
            table_store._s3.cache_clear()
        assert not result.success
        [failure] = [e for e in result.all_events if e.is_step_failure]
        assert failure.step_key == "_descriptor"
        assert "StorageUnavailableError" in str(
            failure.event_specific_data.error.cause or failure.event_specific_data.error
        )
        tags = instance.get_run_by_id(result.run_id).tags
        assert tags[FAILURE_KIND_TAG] == "transient" and tags["dagster/retry_on_asset_or_op_failure"] == "true"
