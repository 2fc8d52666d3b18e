"""Every concurrency limit of a run, named once: the executor's, and the pool of Elasticsearch steps.

Inside one run, the executor (jobs.py) runs at most `max_concurrent` steps, of which at most
`es_bulk_steps` are index_chunk steps (tagged ES_BULK_TAG). Across runs, every index_chunk step
holds a slot of the pool ES_BULK_POOL, whose size the instance sets (dagster_home/dagster.yaml).
The incident's pool defaulted to the CPU count: none of these ever does.
"""

from __future__ import annotations

from collections.abc import Mapping

ES_BULK_TAG = "flows/es_bulk"
ES_BULK_POOL = "flows_es_bulk"
DEFAULT_MAX_CONCURRENT = 4
DEFAULT_ES_BULK_STEPS = 2
# FLOWS_EXECUTOR=celery (celery_steps.py): index_chunk steps go to this celery queue, every other step
# to dagster-celery's default one; a deployment may give the chunk queue workers of its own
CELERY_QUEUE_TAG = "dagster-celery/queue"
CHUNK_QUEUE = "flows_es_bulk"
STEP_QUEUE = "dagster"


def parallel_chunk_steps(run_config: Mapping) -> int:
    """How many index_chunk steps a run executes at once: the executor's `es_bulk_steps`, as the
    run's config sets it (schedules, backfills and the UI set none: the executor's default).
    The instance's `flows_es_bulk` pool may let fewer run at once when several runs are in progress."""
    executor = run_config.get("execution", {}).get("config", {})
    steps = executor.get("es_bulk_steps", DEFAULT_ES_BULK_STEPS)
    most = executor.get("max_concurrent", 0)  # 0: Dagster's "as many as CPUs"
    return max(1, min(steps, most) if most > 0 else steps)
