"""The project's errors: one family, split by whether running the same work again can help.

- `TerminalError`: bad input, a corrupt file, wrong configuration, or a refusal of the cluster
  that a retry cannot change (a mapping rejection, a missing privilege, a write block, a red
  index). The step fails at once; someone must change something first.
- `TransientError`: a fault that heals by itself (connection refused or reset, throttling, a
  timeout). Retried with backoff where a retry policy applies.

The Dagster wiring (`orchestration/failures.py`) turns a terminal error into a step failure
that Dagster does not retry, and lets transient ones reach the step's `RetryPolicy`.

Every error pickles (`__reduce__` below): step processes hand exceptions to their parent, and an
exception whose constructor takes other arguments than its message would not unpickle.
"""

from __future__ import annotations

from typing import Any, ClassVar


def _restore(cls: type[FlowsError], message: str, state: dict[str, Any]) -> FlowsError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class FlowsError(Exception):
    """Base of every error flows_pipeline raises; `retryable` says whether a retry can help."""

    retryable: ClassVar[bool] = False

    def __reduce__(self) -> tuple:
        return _restore, (type(self), str(self), dict(self.__dict__))


class TerminalError(FlowsError):
    """Running the same work again cannot succeed until something is changed."""

    retryable = False


class TransientError(FlowsError):
    """A fault that may heal by itself: worth retrying with backoff."""

    retryable = True


class ConfigurationError(TerminalError, ValueError):
    """A setting that cannot work: the message names the setting, its value and the allowed ones."""


class UnknownPartitionError(ConfigurationError):
    """A partition key that names no hour of the partitions."""
