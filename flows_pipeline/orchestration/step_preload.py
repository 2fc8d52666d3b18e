"""Imported once by the executor's forkserver, so that every step process starts warm.

A forked step process inherits what the server holds, shared until written. Importing the
definitions is not enough: each step would still resolve the repository and build the job (the
implicit asset job of `dagster asset materialize` included), and the first bulk encoding and
client of every chunk step would initialise Arrow kernels, regular expressions and HTTP machinery
of its own (measured: ~40 MB a step). Doing both here, once, before any data exists, moves that
out of every step: start-up is shorter and the memory is shared (bench/RESULTS.md).
"""

import gc
import importlib
import logging
import os
import tempfile

from dagster._core.instance.ref import InstanceRef
from dagster._serdes import ConfigurableClassData
from elasticsearch import Elasticsearch

from flows_pipeline.definitions import defs
from flows_pipeline.es.bulk_encoding import assemble_bodies, encode_lines
from flows_pipeline.hour import FIRST_HOUR_KEY, hour_of
from flows_pipeline.sources.synthetic import synthetic_batches
from flows_pipeline.tables.normalizer import normalize

_repository = defs.get_repository_def()
for _job in _repository.get_all_jobs():
    _job.get_job_snapshot()


def _warm_up() -> None:
    """One tiny synthetic batch through normalization and bulk encoding; a client object (no request)."""
    hour = hour_of(FIRST_HOUR_KEY)
    flows = normalize(next(synthetic_batches(hour, rows=64)), hour).flows
    for _ in assemble_bodies([(0, encode_lines(flows, 0, "warm-up-", "warm-up"))], max_bytes=1 << 20, max_docs=64):
        pass
    Elasticsearch("http://127.0.0.1:9200").close()


def _import_instance_storage() -> None:
    """Import the instance's storage classes without opening any storage.

    Each step process rebuilds the Dagster instance from the ref its parent sends, and that
    imports the configured storages (SQLAlchemy, the SQLite event log, run and schedule
    storage): 0.4-0.9 s of every step's start-up, measured with cProfile in the step process.
    """
    home = os.environ.get("DAGSTER_HOME")
    if home:
        ref = InstanceRef.from_dir(home)
        configured = [getattr(ref, name) for name in ref._fields]
    else:  # the CLI's temporary instance: Dagster's default (SQLite) storages
        configured = list(InstanceRef.config_defaults(tempfile.gettempdir()).values())
    for data in configured:
        if isinstance(data, ConfigurableClassData):
            importlib.import_module(data.module_name)
    for module in ("base_storage", "runs.base", "event_log.base", "schedules.base", "compute_log_manager"):
        importlib.import_module(f"dagster._core.storage.{module}")


_warm_up()
try:
    _import_instance_storage()
except Exception:  # only a speed-up: a forkserver that fails to preload takes every step down with it
    logging.getLogger(__name__).warning("could not preload the instance's storage classes", exc_info=True)

# Last: everything preloaded so far goes to the collector's permanent generation, which no collection
# in a step visits. Otherwise each full collection in a long chunk step writes the GC header of every
# object it inherited, and copy-on-write makes those pages the step's own: with the node on its own core
# (bench/, --pin), chunk steps peaked at ~110 MB PSS each in a 30 s load of 1M rows and at ~150 MB in a
# 250 s load of 7.85M. (The Python docs' advice for fork without exec: gc.freeze.)
gc.freeze()
