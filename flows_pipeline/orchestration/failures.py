"""How the project's errors end a Dagster step: terminal ones at once, transient ones retried.

Dagster retries a step with a `RetryPolicy` whatever it raised. A mapping rejection, a missing
privilege or a corrupt file fails the same way every time, so those end the step with
`Failure(allow_retries=False)`, raised from the project's exception: the event log shows the
exception's class and message, and no retry is spent. Transient errors pass through to the
step's retry policy. Anything else is unexpected (a bug): retrying it would only repeat it.

The same split decides whether the daemon re-executes a failed run (`run_retries` in
dagster.yaml, whose `retry_on_asset_or_op_failure: false` retries no run that failed in a step):
a transient error that escapes its step's retries tags the run
`dagster/retry_on_asset_or_op_failure=true`, unless a terminal error tagged it `false` already;
Dagster reads that tag when the run fails (dagster/_core/execution/retries.py). FAILURE_KIND_TAG
says which kind ended it, for the catch-up sensor and the alerts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from dagster import DagsterError, DagsterInstance, DagsterRun, Failure, RetryRequested
from dagster._core.storage.tags import RETRY_ON_ASSET_OR_OP_FAILURE_TAG
from elasticsearch import ApiError, TransportError

from flows_pipeline.errors import TerminalError, TransientError
from flows_pipeline.es.cluster_errors import cluster_error

FAILURE_KIND_TAG = "flows/failure_kind"  # "transient" or "terminal": what ended (or may end) the run


class StepContext(Protocol):
    """What of a Dagster step context tags its run (op and asset contexts both have it)."""

    @property
    def instance(self) -> DagsterInstance: ...

    @property
    def run(self) -> DagsterRun: ...


@contextmanager
def retry_only_transient_errors(context: StepContext, what: str = "a request") -> Iterator[None]:
    """Run a step's body so that only TransientError reaches Dagster's retry policy, and only a
    transient failure lets the daemon re-execute the run (the run's tags, see above).

    An Elasticsearch client error that the domain code did not classify itself is classified
    here by the cluster's error type (`what` names the step's work in its message).
    """
    try:
        try:
            yield
        except (ApiError, TransportError) as err:
            raise cluster_error(err, what) from err
    except TransientError:
        _tag_failure(context, "transient")
        raise
    except (Failure, RetryRequested, DagsterError):
        raise
    except TerminalError as err:
        _tag_failure(context, "terminal")
        raise Failure(description=f"{type(err).__name__}: {err}", allow_retries=False) from err
    except Exception as err:
        _tag_failure(context, "terminal")
        raise Failure(
            description=f"unexpected {type(err).__name__}: {err} (not retried: please report it with the run's log)",
            allow_retries=False,
        ) from err


def _tag_failure(context: StepContext, kind: str) -> None:
    run = context.instance.get_run_by_id(context.run.run_id)  # its tags now, not when the step started
    if run is None or run.tags.get(FAILURE_KIND_TAG) == "terminal":
        return  # a terminal failure of another step already decided: no run retry
    retry = "true" if kind == "transient" else "false"
    context.instance.add_run_tags(run.run_id, {FAILURE_KIND_TAG: kind, RETRY_ON_ASSET_OR_OP_FAILURE_TAG: retry})
