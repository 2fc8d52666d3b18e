"""Imported once by the executor's forkserver, so that every step process starts warm.

A forked step process inherits what the server holds, shared until written. Importing the
definitions is not enough: each step would still resolve the repository and build the job (the
implicit asset job of `dagster asset materialize` included), and the first bulk encoding and
client of every chunk step would initialise Arrow kernels, regular expressions and HTTP machinery
of its own (measured: ~40 MB a step). Doing both here, once, before any data exists, moves that
out of every step: start-up is shorter and the memory is shared (bench/RESULTS.md).
"""

from elasticsearch import Elasticsearch

from flows_pipeline.bulk_encoding import assemble_bodies, encode_lines
from flows_pipeline.definitions import defs
from flows_pipeline.flow_normalizer import normalize
from flows_pipeline.partitions import hour_of
from flows_pipeline.synthetic import synthetic_batches

_repository = defs.get_repository_def()
for _job in _repository.get_all_jobs():
    _job.get_job_snapshot()


def _warm_up() -> None:
    """One tiny synthetic batch through normalization and bulk encoding; a client object (no request)."""
    hour = hour_of("2021-10-28-00:00")
    flows = normalize(next(synthetic_batches(hour, rows=64)), hour).flows
    for _ in assemble_bodies([(0, encode_lines(flows, 0))], max_bytes=1 << 20, max_docs=64):
        pass
    Elasticsearch("http://127.0.0.1:9200").close()


_warm_up()
