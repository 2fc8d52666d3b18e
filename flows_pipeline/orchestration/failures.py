"""How the project's errors end a Dagster step: terminal ones at once, transient ones retried.

Dagster retries a step with a `RetryPolicy` whatever it raised. A mapping rejection, a missing
privilege or a corrupt file fails the same way every time, so those end the step with
`Failure(allow_retries=False)`, raised from the project's exception: the event log shows the
exception's class and message, and no retry is spent. Transient errors pass through to the
step's retry policy. Anything else is unexpected (a bug): retrying it would only repeat it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import DagsterError, Failure, RetryRequested
from elasticsearch import ApiError, TransportError

from flows_pipeline.errors import TerminalError, TransientError
from flows_pipeline.es.cluster_errors import cluster_error


@contextmanager
def retry_only_transient_errors(what: str = "a request") -> Iterator[None]:
    """Run a step's body so that only TransientError reaches Dagster's retry policy.

    An Elasticsearch client error that the domain code did not classify itself is classified
    here by the cluster's error type (`what` names the step's work in its message).
    """
    try:
        try:
            yield
        except (ApiError, TransportError) as err:
            raise cluster_error(err, what) from err
    except (TransientError, Failure, RetryRequested, DagsterError):
        raise
    except TerminalError as err:
        raise Failure(description=f"{type(err).__name__}: {err}", allow_retries=False) from err
    except Exception as err:
        raise Failure(
            description=f"unexpected {type(err).__name__}: {err} (not retried: please report it with the run's log)",
            allow_retries=False,
        ) from err
