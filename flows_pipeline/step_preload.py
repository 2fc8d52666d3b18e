"""Imported once by the executor's forkserver, so that every step process starts warm.

A forked step process inherits what the server holds. Importing the definitions is not enough:
each step would still resolve the repository and build the job (the implicit asset job of
`dagster asset materialize` included) before running a line of user code. Doing that here, once,
before any data exists, moves the cost out of every step (measured in bench/RESULTS.md).
"""

from flows_pipeline.definitions import defs

_repository = defs.get_repository_def()
for _job in _repository.get_all_jobs():
    _job.get_job_snapshot()
