"""The IO manager for tables on S3 (step_values.py): a step's value is an object under
<root>/step_values/<run id>/<step key>/<output>[/<mapping key>], read back by the step downstream and by a
re-execution from the run that made it; a value of type Nothing is neither written nor read."""

from __future__ import annotations

import pytest
from dagster import Any, Nothing, build_input_context, build_output_context
from dagster._core.types.dagster_type import resolve_dagster_type

from flows_pipeline.es.chunk_plan import ChunkSpec
from flows_pipeline.orchestration.step_values import StepValueMissingError, StepValues
from flows_pipeline.tables import table_store
from flows_pipeline_tests.s3 import stored_files


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
    with (
        _output("run-9", "flow_index.plan_index_chunks") as made,
        _input(made) as downstream,
        pytest.raises(StepValueMissingError) as missing,
    ):
        values.load_input(downstream)
    assert "step flow_index.plan_index_chunks of run run-9" in str(missing.value)
    assert "materialize the hour anew" in str(missing.value)
    assert table_store.delete_folder(table_store.join(table_store.normalized_root(root), "step_values", "run-9")) == 0
