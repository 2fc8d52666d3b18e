"""The celery app a worker runs: `celery -A flows_pipeline.orchestration.celery_worker worker -Q dagster,flows_es_bulk`.

scripts/workers.sh starts such workers. A worker needs the same environment as the runs (ES_URL and
credentials, FLOWS_*, the instance's DAGSTER_PG_* and DAGSTER_HOME): the step it executes loads
the code location and opens the instance in the worker's own process.
"""

from __future__ import annotations

import os

from celery.signals import worker_init
from dagster_celery.config import DEFAULT_CONFIG, dict_wrapper
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from flows_pipeline.errors import ConfigurationError
from flows_pipeline.orchestration.celery_steps import BROKER_ENV, celery_settings

_broker = os.environ.get(BROKER_ENV, "")


@worker_init.connect
def _needs_a_broker(**_: object) -> None:
    """A worker without the broker's URL stops at once, naming the variable (celery would try amqp://localhost).
    SystemExit: celery logs and ignores an Exception raised by a signal's receiver."""
    if not _broker:
        problem = ConfigurationError(
            f'{BROKER_ENV} is not set: a worker needs the broker\'s URL (locally: eval "$(scripts/redis.sh env)")'
        )
        raise SystemExit(f"celery_worker: {problem}")


_settings = dict_wrapper({**DEFAULT_CONFIG, **celery_settings()})  # as CeleryExecutor builds them
app = make_app({"broker": _broker or None, "backend": _broker or None, "include": [], "config_source": _settings})
execute_plan = create_task(app)
