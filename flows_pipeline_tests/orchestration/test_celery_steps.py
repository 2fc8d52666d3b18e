"""The celery executor's choice and settings, without a broker (the `celery` tests run the real thing)."""

from __future__ import annotations

import pytest

from flows_pipeline.errors import ConfigurationError
from flows_pipeline.orchestration.celery_steps import celery_settings, flows_celery_executor, visibility_timeout_s
from flows_pipeline.orchestration.jobs import executor_from_env, flows_executor


def test_flows_executor_chooses_the_machine_or_the_workers_and_names_the_choices_otherwise():
    assert executor_from_env({}) is flows_executor
    assert executor_from_env({"FLOWS_EXECUTOR": "celery"}) is flows_celery_executor
    with pytest.raises(ConfigurationError, match=r"FLOWS_EXECUTOR='dask'.*multiprocess or celery"):
        executor_from_env({"FLOWS_EXECUTOR": "dask"})


def test_a_step_is_acknowledged_when_it_ends_so_a_lost_worker_gives_it_back():
    settings = celery_settings({})
    assert settings["task_acks_late"] and settings["task_reject_on_worker_lost"]
    assert settings["worker_prefetch_multiplier"] == 1
    assert settings["broker_transport_options"] == {
        "visibility_timeout": 3600,
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
    }
    assert (
        celery_settings({"FLOWS_CELERY_VISIBILITY_TIMEOUT_S": "8"})["broker_transport_options"][
            "unacked_restore_interval"
        ]
        == 2
    )


@pytest.mark.parametrize("value", ["0", "-5", "an hour"])
def test_a_visibility_timeout_that_is_not_positive_seconds_is_refused_by_name(value):
    with pytest.raises(ConfigurationError, match=r"FLOWS_CELERY_VISIBILITY_TIMEOUT_S.*unset it for 3600"):
        visibility_timeout_s({"FLOWS_CELERY_VISIBILITY_TIMEOUT_S": value})
