"""Steps on several machines: dagster-celery's executor with the same explicit limits as one machine.

The run's orchestrating process (`dagster asset materialize`, or the daemon's run worker) plans
the run and sends each step as a celery task through the broker (FLOWS_CELERY_BROKER_URL, redis
here); any worker listening on the step's queue executes it (celery_worker.py). Chunk steps go to
the queue CHUNK_QUEUE, every other step to Dagster's default queue `dagster`.

Which limits hold, read in dagster-celery 0.29.27's `core_celery_execution_loop`:

- the `flows_es_bulk` pool: yes, globally. The orchestrator claims a slot in the instance (the
  database every worker shares) before it sends a chunk step, and frees it when the step's result
  comes back, so the pool caps chunk steps across workers and runs alike.
- `max_concurrent` and `tag_concurrency_limits`: no. The loop starts the plan's ActiveExecution
  without them, so every ready step would be sent at once. `CappedCeleryExecutor` passes them
  (`es_bulk_steps` for chunk steps), which bounds steps in flight per run across all workers.

A worker lost mid-step: tasks are acknowledged after they end (`task_acks_late`), so a step whose
process is SIGKILLed (the OOM killer) is put back on its queue by its worker at once
(`task_reject_on_worker_lost`), and a step of a worker that died whole (a machine lost) comes back
after the broker's `visibility_timeout` (FLOWS_CELERY_VISIBILITY_TIMEOUT_S). Either way the step
executes again, on any worker, holding the same pool slot; a chunk rewrites the same document ids
into the same attempt, so the hour ends exact, never duplicated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dagster import Field, IntSource, StringSource, executor, multiple_process_executor_requirements
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster_celery.executor import CeleryExecutor, _submit_task

from flows_pipeline.errors import ConfigurationError
from flows_pipeline.orchestration.concurrency import (
    DEFAULT_ES_BULK_STEPS,
    DEFAULT_MAX_CONCURRENT,
    ES_BULK_TAG,
    STEP_QUEUE,
)

BROKER_ENV = "FLOWS_CELERY_BROKER_URL"
VISIBILITY_ENV = "FLOWS_CELERY_VISIBILITY_TIMEOUT_S"
DEFAULT_VISIBILITY_TIMEOUT_S = 3600


def visibility_timeout_s(environ: Mapping[str, str] = os.environ) -> int:
    """Seconds after which the broker gives a task taken by a worker that never acknowledged it to
    another worker. Must exceed the longest step (a 2M-row chunk loads in minutes): a shorter
    timeout hands a step that is still running to a second worker as well (harmless for a chunk,
    which rewrites the same ids, but twice the load)."""
    raw = environ.get(VISIBILITY_ENV, str(DEFAULT_VISIBILITY_TIMEOUT_S))
    try:
        seconds = int(raw)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise ConfigurationError(
            f"{VISIBILITY_ENV}={raw!r} is not a positive whole number of seconds; unset it for 3600"
        )
    return seconds


def celery_settings(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Celery settings shared by the executor and the workers (both must agree)."""
    return {
        "worker_prefetch_multiplier": 1,  # a worker takes one step at a time, leaving the rest to others
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_default_queue": STEP_QUEUE,
        "task_default_priority": 5,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": _redelivery(visibility_timeout_s(environ)),
        "result_expires": 24 * 3600,
    }


def _redelivery(visibility_s: int) -> dict[str, int]:
    """kombu's redis transport looks for tasks past their visibility timeout every
    `unacked_restore_interval` × `unacked_restore_throttle` seconds, 10 × 10 by default: a lost
    worker's step would wait up to 100 s more (measured: 80 s with an 8 s timeout). One look every
    quarter of the timeout (at most 10 s) is one sorted-set range query."""
    return {
        "visibility_timeout": visibility_s,
        "unacked_restore_interval": max(1, min(10, visibility_s // 4)),
        "unacked_restore_throttle": 1,
    }


class _CappedPlan(ExecutionPlan):
    """The run's plan, starting its execution with the run's step limits (which the celery loop omits)."""

    limits: dict[str, Any]

    def start(self, retry_mode, sort_key_fn=None, **kwargs):
        return super().start(retry_mode, sort_key_fn, **{**kwargs, **self.limits})


class CappedCeleryExecutor(CeleryExecutor):
    """dagster-celery's executor, honouring `max_concurrent` and `tag_concurrency_limits` of a run."""

    def __init__(self, *, max_concurrent: int, tag_concurrency_limits: list[dict], **kwargs):
        super().__init__(**kwargs)
        self.max_concurrent = max_concurrent
        self.tag_concurrency_limits = tag_concurrency_limits

    def execute(self, plan_context, execution_plan):
        from dagster_celery.core_execution_loop import core_celery_execution_loop

        capped = _CappedPlan(*execution_plan)
        capped.limits = {"max_concurrent": self.max_concurrent, "tag_concurrency_limits": self.tag_concurrency_limits}
        return core_celery_execution_loop(plan_context, capped, step_execution_fn=_submit_task)


@executor(
    name="flows_celery",
    config_schema={
        "broker": Field(StringSource, default_value={"env": BROKER_ENV}, description="The celery broker's URL."),
        "backend": Field(
            StringSource, default_value={"env": BROKER_ENV}, description="Where workers put step results (the broker)."
        ),
        "max_concurrent": Field(
            IntSource, default_value=DEFAULT_MAX_CONCURRENT, description="Steps of one run at once, on all workers."
        ),
        "es_bulk_steps": Field(
            IntSource, default_value=DEFAULT_ES_BULK_STEPS, description="index_chunk steps of one run at once."
        ),
        "retries": get_retries_config(),
    },
    requirements=multiple_process_executor_requirements(),
)
def flows_celery_executor(init_context) -> CappedCeleryExecutor:
    """Steps as celery tasks on the workers of FLOWS_CELERY_BROKER_URL, within the run's limits."""
    config = init_context.executor_config
    return CappedCeleryExecutor(
        broker=config["broker"],
        backend=config["backend"],
        config_source=celery_settings(),
        retries=RetryMode.from_config(config["retries"]),
        max_concurrent=config["max_concurrent"],
        tag_concurrency_limits=[{"key": ES_BULK_TAG, "value": "true", "limit": config["es_bulk_steps"]}],
    )
