#!/usr/bin/env bash
# make demo-cluster: the hours `make demo` loads, with every part a deployment on several machines has,
# each the project's own on this machine: the instance on PostgreSQL (scripts/postgres.sh, deploy/dagster.yaml
# in .cluster/dagster_home), the tables on S3 (scripts/s3proxy.sh), the celery broker (scripts/redis.sh) and
# two workers in .workers/w1 and .workers/w2 (scripts/workers.sh), steps sent to them (FLOWS_EXECUTOR=celery).
# Elasticsearch is the local node (make es-up) or ES_URL. Everything stays up afterwards, so the UI
# (DAGSTER_HOME=.cluster/dagster_home with the same environment) shows the runs; `make demo-cluster-down`
# stops it all. Secrets (the PostgreSQL, S3 and broker passwords) are read from their files, never printed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

down() {
  scripts/workers.sh stop || true
  scripts/redis.sh stop || true
  scripts/s3proxy.sh stop || true
  scripts/postgres.sh stop || true
}

if [ "${1:-}" = down ]; then down; exit 0; fi

scripts/postgres.sh up
scripts/s3proxy.sh up
scripts/redis.sh up
eval "$(scripts/postgres.sh env)"
eval "$(scripts/s3proxy.sh env)"
eval "$(scripts/redis.sh env)"
export DAGSTER_HOME="$ROOT/.cluster/dagster_home" FLOWS_EXECUTOR=celery
mkdir -p "$DAGSTER_HOME"
cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
# the pool by hand, not from dagster.yaml, on PostgreSQL (dagster-io/dagster#33552; README)
.venv/bin/dagster instance concurrency set flows_es_bulk 2 > /dev/null
# each worker with a DAGSTER_HOME of its own, as on a machine of its own: tables and step values are on S3
WORKER_DAGSTER_YAML=deploy/dagster.yaml scripts/workers.sh up
.venv/bin/python scripts/demo.py "$@"
echo "demo-cluster: Postgres, s3proxy, redis and the workers are still running; make demo-cluster-down stops them"
