#!/usr/bin/env bash
# Celery workers of flows_pipeline on one machine, each standing for a machine of its own: started and
# stopped by their PIDs.
#
#   start    start WORKERS workers (2), w1..wN, each executing up to WORKER_CONCURRENCY steps (2) at once
#   up       start, then wait until each answers the broker (celery inspect ping)
#   stop     stop each by its PID: SIGTERM (a warm shutdown finishes the steps it runs), SIGKILL to its
#            process group after WORKER_STOP_TIMEOUT_S (60)
#   status   which are running
#   pids     "wN PID" per running worker (the tests kill one)
#
# Each worker lives in WORKERS_DIR/wN (.workers/, git-ignored) as on a machine of its own: its working
# folder and TMPDIR, worker.log, worker.pid. It runs
# `celery -A flows_pipeline.orchestration.celery_worker worker -Q dagster,flows_es_bulk` (WORKER_QUEUES)
# in its own session, with this shell's environment: FLOWS_CELERY_BROKER_URL (eval "$(scripts/redis.sh
# env)"), ES_URL and credentials, FLOWS_*, DAGSTER_HOME and DAGSTER_PG_*, as the runs have them. The
# broker's URL holds a password: it is never printed. WORKER_DAGSTER_YAML=deploy/dagster.yaml gives each
# worker a DAGSTER_HOME of its own (wN/dagster_home) with that instance config, as a machine of its own
# has. (A step a worker executes opens the instance from the run's own reference, sent with the task:
# with the instance on PostgreSQL and tables and step values on S3 nothing of it is read from a folder.)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICE=workers.sh
# shellcheck source=scripts/pid_service.sh
source "$ROOT/scripts/pid_service.sh"
WORKERS_DIR="$(realpath -m "${WORKERS_DIR:-$ROOT/.workers}")"
WORKERS="${WORKERS:-2}"
WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-2}"
WORKER_QUEUES="${WORKER_QUEUES:-dagster,flows_es_bulk}"
WORKER_STOP_TIMEOUT_S="${WORKER_STOP_TIMEOUT_S:-60}"
CELERY="${CELERY:-$ROOT/.venv/bin/celery}"
APP=flows_pipeline.orchestration.celery_worker

running_pid() { pid_of "$1/worker.pid"; }  # $1: worker folder

each() { for i in $(seq 1 "$WORKERS"); do echo "w$i"; done; }

start() {
  if [ -z "${FLOWS_CELERY_BROKER_URL:-}" ]; then
    echo "workers.sh: FLOWS_CELERY_BROKER_URL is not set; the workers need the broker (locally: eval \"\$(scripts/redis.sh env)\")" >&2
    exit 1
  fi
  [ -x "$CELERY" ] || { echo "workers.sh: $CELERY not found; run make setup" >&2; exit 1; }
  for name in $(each); do
    local dir="$WORKERS_DIR/$name"
    if pid="$(running_pid "$dir")"; then echo "workers.sh: $name already running (pid $pid)"; continue; fi
    mkdir -p "$dir/tmp" && rm -f "$dir/worker.pid"
    local home=()  # the run's DAGSTER_HOME, unless the worker stands for a machine with its own
    if [ -n "${WORKER_DAGSTER_YAML:-}" ]; then
      mkdir -p "$dir/dagster_home" && cp "$WORKER_DAGSTER_YAML" "$dir/dagster_home/dagster.yaml"
      home=("DAGSTER_HOME=$dir/dagster_home")
    fi
    # setsid: the worker and its pool's processes are one process group, stopped together
    # (setsid may fork: the worker writes its own PID, then becomes celery by exec)
    # (the whole group redirected: no process of it keeps this script's output open)
    (cd "$dir" && env ${home[@]+"${home[@]}"} TMPDIR="$dir/tmp" nohup setsid bash -c 'echo $$ > worker.pid; exec "$@"' worker \
      "$CELERY" -A "$APP" worker -Q "$WORKER_QUEUES" -c "$WORKER_CONCURRENCY" --pool prefork -n "$name@%h" \
      --without-gossip --without-mingle -l INFO &) > "$dir/worker.log" 2>&1 < /dev/null
    for _ in $(seq 1 50); do [ -s "$dir/worker.pid" ] && break; sleep 0.1; done
    echo "workers.sh: started $name (pid $(cat "$dir/worker.pid")), $WORKER_CONCURRENCY steps at once, queues $WORKER_QUEUES, in $dir"
  done
}

wait_ready() {
  for name in $(each); do
    local dir="$WORKERS_DIR/$name" ok=""
    for _ in $(seq 1 120); do
      if grep -q "ready\." "$dir/worker.log" 2>/dev/null; then ok=1; break; fi
      running_pid "$dir" >/dev/null || { echo "workers.sh: $name exited while starting; last log lines:" >&2; tail -n 30 "$dir/worker.log" >&2; exit 1; }
      sleep 0.5
    done
    [ -n "$ok" ] || { echo "workers.sh: $name not ready after 60 s; see $dir/worker.log" >&2; exit 1; }
    echo "workers.sh: $name ready"
  done
}

stop() {
  for dir in "$WORKERS_DIR"/w*; do
    [ -d "$dir" ] || continue
    local name pid; name="$(basename "$dir")"
    if ! pid="$(running_pid "$dir")"; then rm -f "$dir/worker.pid"; continue; fi
    kill -TERM "$pid"
    local steps=$((WORKER_STOP_TIMEOUT_S * 5)) gone=""
    for _ in $(seq 1 "$steps"); do
      kill -0 "$pid" 2>/dev/null || { gone=1; break; }
      sleep 0.2
    done
    kill -KILL -- "-$pid" 2>/dev/null || true  # its pool's processes, and the worker itself if it lingers
    rm -f "$dir/worker.pid"
    if [ -n "$gone" ]; then echo "workers.sh: stopped $name (pid $pid)"; else echo "workers.sh: killed $name (pid $pid) after ${WORKER_STOP_TIMEOUT_S} s"; fi
  done
}

status() {
  local any=""
  for dir in "$WORKERS_DIR"/w*; do
    [ -d "$dir" ] || continue
    if pid="$(running_pid "$dir")"; then echo "workers.sh: $(basename "$dir") running (pid $pid)"; any=1; fi
  done
  [ -n "$any" ] || echo "workers.sh: none running"
}

pids() {
  for dir in "$WORKERS_DIR"/w*; do
    [ -d "$dir" ] || continue
    if pid="$(running_pid "$dir")"; then echo "$(basename "$dir") $pid"; fi
  done
}

case "${1:-}" in
  start) start ;;
  up) start; wait_ready ;;
  stop) stop ;;
  status) status ;;
  pids) pids ;;
  *) echo "usage: scripts/workers.sh start|up|stop|status|pids" >&2; exit 2 ;;
esac
