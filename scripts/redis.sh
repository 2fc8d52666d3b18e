#!/usr/bin/env bash
# The celery broker of flows_pipeline on one machine: Debian's redis-server, started and stopped by its PID.
#
#   start    start it on 127.0.0.1:REDIS_PORT, its files in REDIS_DIR
#   up       start, then wait until it answers PING
#   stop     stop it by its PID (SIGTERM, SIGKILL after 15 s)
#   status   is it running, and on which port
#   env      the exports workers and runs need:  eval "$(scripts/redis.sh env)"  (the password is read
#            from its file when evaluated, never printed)
#
# It lives in REDIS_DIR (.redis/, git-ignored): redis.conf, redis.log, redis.pid and the password
# (random, made once, mode 600; the conf holding it has the same mode). No persistence: a broker that
# restarts loses queued tasks, and the runs that sent them fail and are retried (README, "Several
# workers"). Another REDIS_DIR and REDIS_PORT run another broker: the test suite's is .redis/test on a
# free port. Real deployments point FLOWS_CELERY_BROKER_URL at their own broker (ElastiCache, RabbitMQ).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICE=redis.sh
# shellcheck source=scripts/pid_service.sh
source "$ROOT/scripts/pid_service.sh"
REDIS_DIR="$(realpath -m "${REDIS_DIR:-$ROOT/.redis}")"
REDIS_PORT="${REDIS_PORT:-6380}"   # beside a system redis on 6379
CONF="$REDIS_DIR/redis.conf"
LOG="$REDIS_DIR/redis.log"
PID_FILE="$REDIS_DIR/redis.pid"
PASSWORD_FILE="$REDIS_DIR/password"

find_server() {
  if command -v redis-server >/dev/null 2>&1; then command -v redis-server; return; fi
  echo "redis.sh: redis-server not found; install Debian's redis-server (make system-packages, as root)" >&2
  exit 1
}


# the password goes through the environment (REDISCLI_AUTH), never the command line
ping() { REDISCLI_AUTH="$(cat "$PASSWORD_FILE" 2>/dev/null)" redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

start() {
  local server; server="$(find_server)"
  if pid="$(pid_of "$PID_FILE")"; then echo "redis.sh: already running (pid $pid) on 127.0.0.1:$REDIS_PORT"; return; fi
  if (echo > "/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then
    echo "redis.sh: something already listens on 127.0.0.1:$REDIS_PORT but it is not ours (no pid file); stop it or set REDIS_PORT" >&2
    exit 1
  fi
  mkdir -p "$REDIS_DIR"
  [ -s "$PASSWORD_FILE" ] || (umask 077; head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 32 > "$PASSWORD_FILE")
  (umask 077; cat > "$CONF" <<CONF
bind 127.0.0.1
port $REDIS_PORT
dir $REDIS_DIR
logfile $LOG
requirepass $(cat "$PASSWORD_FILE")
save ""
appendonly no
protected-mode yes
CONF
  )
  nohup "$server" "$CONF" > /dev/null 2>&1 < /dev/null &
  echo "$!" > "$PID_FILE"
  echo "redis.sh: started $("$server" --version | cut -d' ' -f1-3) (pid $(cat "$PID_FILE")) on 127.0.0.1:$REDIS_PORT, files in $REDIS_DIR"
}

wait_healthy() {
  await ping 10 "$PID_FILE" "$LOG" "answering on 127.0.0.1:$REDIS_PORT"
  echo "redis.sh: answering on 127.0.0.1:$REDIS_PORT"
}

stop() { stop_pid "$PID_FILE" redis-server 15; }

status() { status_of "$PID_FILE" "on 127.0.0.1:$REDIS_PORT"; }

# eval-able; the password is read from its file when evaluated, so it is never printed
env_exports() {
  echo "export FLOWS_CELERY_BROKER_URL=\"redis://:\$(cat '$PASSWORD_FILE')@127.0.0.1:$REDIS_PORT/0\""
}

case "${1:-}" in
  start) start ;;
  up) start; wait_healthy ;;
  stop) stop ;;
  status) status ;;
  env) env_exports ;;
  *) echo "usage: scripts/redis.sh start|up|stop|status|env" >&2; exit 2 ;;
esac
