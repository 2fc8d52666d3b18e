#!/usr/bin/env bash
# By hand (issue 21, "Measure"): one 1,000,000-row synthetic hour materialized by the multiprocess executor
# on this machine and another through two celery workers (scripts/workers.sh, 2 processes each), against the
# same Elasticsearch node (ES_URL, default the local one), in one invocation; prints one JSON object.
#   bench/celery_workers.sh [multiprocess-first|celery-first] > bench/results/celery-1m-N.json
# Its own DAGSTER_HOME (SQLite), tables and broker in bench/work/celery/; index prefix benchcelery.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ORDER="${1:-multiprocess-first}"
WORK="$ROOT/bench/work/celery"
export ES_URL="${ES_URL:-http://127.0.0.1:9200}" FLOWS_INDEX_PREFIX=benchcelery FLOWS_SYNTHETIC_ROWS="${ROWS:-1000000}"
export FLOWS_STORAGE_ROOT="$WORK/tables" DAGSTER_HOME="$WORK/home"
export REDIS_DIR="$WORK/redis" REDIS_PORT="${REDIS_PORT:-6395}" WORKERS_DIR="$WORK/workers"
rm -rf "$WORK/tables" "$WORK/home" && mkdir -p "$DAGSTER_HOME" && cp dagster_home/dagster.yaml "$DAGSTER_HOME/"
scripts/redis.sh up > /dev/null
eval "$(scripts/redis.sh env)"
scripts/workers.sh up > /dev/null
trap 'scripts/workers.sh stop > /dev/null || true; scripts/redis.sh stop > /dev/null || true' EXIT

load() {  # $1 executor, $2 hour: wall seconds of `dagster asset materialize`
  local t0 t1
  t0=$(date +%s.%N)
  FLOWS_EXECUTOR="$1" .venv/bin/dagster asset materialize -m flows_pipeline.definitions --select '*' \
    --partition "$2" > "$WORK/$1.log" 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
count() { curl -s "$ES_URL/benchcelery-$1/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])'; }

if [ "$ORDER" = celery-first ]; then
  c=$(load celery 2021-10-28-11:00); mp=$(load multiprocess 2021-10-28-10:00)
else
  mp=$(load multiprocess 2021-10-28-10:00); c=$(load celery 2021-10-28-11:00)
fi
python3 - "$ORDER" "$mp" "$c" "$(count 2021.10.28-10)" "$(count 2021.10.28-11)" "$(git rev-parse --short HEAD)" <<'PY'
import json, os, sys
order, mp, c, docs_mp, docs_c, commit = sys.argv[1:]
print(json.dumps({
    "rows": int(os.environ["FLOWS_SYNTHETIC_ROWS"]), "order": order, "commit": commit,
    "multiprocess_wall_s": round(float(mp), 1), "celery_two_workers_wall_s": round(float(c), 1),
    "ratio_celery_to_multiprocess": round(float(c) / float(mp), 2),
    "documents": {"multiprocess": int(docs_mp), "celery": int(docs_c)},
    "load_average_after": os.getloadavg(), "cores": os.cpu_count(),
    "config": "defaults: max_concurrent 4, es_bulk_steps 2, pool 2, FLOWS_BULK_IN_FLIGHT 2; 2 workers x -c 2",
}, indent=1))
PY
