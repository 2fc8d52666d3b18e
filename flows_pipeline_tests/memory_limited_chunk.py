"""Run in a subprocess by test_memory_bound: index one chunk (or build its whole body) under a
hard address-space limit of `headroom` bytes above what the imports already use."""

import json
import resource
import sys

from flows_pipeline.es.chunk_loading import BulkLimits, ChunkTask, chunk_bodies, index_chunk
from flows_pipeline.es.chunk_plan import plan_chunks
from flows_pipeline.es.connection import connect
from flows_pipeline.es.index_lifecycle import LoadAttempt
from flows_pipeline.orchestration.resources import FlowsElasticsearch
from flows_pipeline_tests.support import connection_settings


def virtual_memory_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))


def main(mode: str, table: str, es_url: str, attempt_json: str, headroom: int) -> None:
    chunk = plan_chunks(table, parallel_steps=1, max_row_groups_per_chunk=10**6)[0]  # the whole hour in one chunk
    task = ChunkTask(LoadAttempt(**json.loads(attempt_json)), chunk)
    client = connect(connection_settings(es_url))
    limits = BulkLimits(max_bytes=5 * 2**20, max_docs=10_000, max_in_flight=2)
    limit = virtual_memory_bytes() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if mode == "whole-body":  # what the incident did: the hour's body in one piece
        body = b"".join(body.payload for body in chunk_bodies(task, limits))
        print(f"built {len(body)} bytes")
    else:
        result = index_chunk(client, es_url, task, limits, FlowsElasticsearch().retry)
        print(f"indexed {result.indexed}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
