#!/usr/bin/env bash
# PostgreSQL for the Dagster instance of flows_pipeline: a cluster of the project's own, started
# and stopped by its PID.
#
#   up       initdb if needed, start, wait until it accepts connections, create the database and user
#   stop     stop the cluster by its PID (fast shutdown: open sessions are ended, not waited for)
#   status   is it running, and on which port
#   env      the DAGSTER_PG_* exports deploy/dagster.yaml reads:  eval "$(scripts/postgres.sh env)"
#   createdb NAME   another database of the Dagster user (the tests give each instance its own)
#
# The cluster lives in PG_DIR (.pg/, git-ignored): data/, postgres.log, postgres.pid, the socket,
# and the Dagster user's password (random, made once, in PG_DIR/password). It listens on
# 127.0.0.1:PG_PORT (5433, so it never meets a system PostgreSQL on 5432) and a socket in PG_DIR.
# Another PG_DIR and PG_PORT run another cluster: the test suite's is .pg/test on a free port.
# A production deployment uses a PostgreSQL of its own instead (README, "Production deployment").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICE=postgres.sh
# shellcheck source=scripts/pid_service.sh
source "$ROOT/scripts/pid_service.sh"
PG_DIR="$(realpath -m "${PG_DIR:-$ROOT/.pg}")"  # absolute: the socket path and pg_ctl need it
PG_PORT="${PG_PORT:-5433}"
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"
PID_FILE="$PG_DIR/postgres.pid"
PASSWORD_FILE="$PG_DIR/password"
PG_USER="${PG_RUN_USER:-postgres}"           # PostgreSQL refuses to run as root
DB="${DAGSTER_PG_DB:-flows_dagster}"
DB_USER="${DAGSTER_PG_USERNAME:-flows_dagster}"

find_bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
  local dir
  if dir="$(pg_config --bindir 2>/dev/null)" && [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
  # Debian keeps the server binaries out of PATH, one folder per major: the newest
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
  echo "postgres.sh: no PostgreSQL server binaries (initdb, pg_ctl) found; install Debian's postgresql" \
    "(make system-packages) or set PG_BINDIR" >&2
  exit 1
}

BIN=""

# As root, initdb and the server run as PG_USER (a system user made if missing), owning PG_DIR.
run_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid="$PG_USER" --regid="$(id -g "$PG_USER")" --init-groups "$@"
  else
    "$@"
  fi
}

superuser() { if [ "$(id -u)" = 0 ]; then echo "$PG_USER"; else id -un; fi; }


accepting() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2; }

init_cluster() {
  mkdir -p "$PG_DIR"
  if [ "$(id -u)" = 0 ]; then
    id "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
    chown -R "$PG_USER" "$PG_DIR"
  fi
  [ -s "$PASSWORD_FILE" ] \
    || (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 24 > "$PASSWORD_FILE")
  [ -f "$PG_DATA/PG_VERSION" ] && return
  # Local socket: trust (the socket is in PG_DIR, only its owner and root reach it). TCP: passwords.
  run_as_owner "$BIN/initdb" -D "$PG_DATA" -U "$(superuser)" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 --no-instructions > "$PG_DIR/initdb.out" 2>&1 \
    || { cat "$PG_DIR/initdb.out" >&2; exit 1; }
  echo "postgres.sh: initialized a cluster in $PG_DATA"
}

start() {
  BIN="$(find_bindir)"
  if pid="$(pid_of "$PID_FILE")"; then echo "postgres.sh: already running (pid $pid) on 127.0.0.1:$PG_PORT"; return; fi
  if accepting; then
    echo "postgres.sh: something already answers on 127.0.0.1:$PG_PORT but it is not ours (no pid file);" \
      "stop it or set PG_PORT" >&2
    exit 1
  fi
  init_cluster
  run_as_owner "$BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $PG_DIR -c unix_socket_permissions=0700" >/dev/null \
    || { echo "postgres.sh: the server did not start; last log lines:" >&2; tail -n 30 "$PG_LOG" >&2; exit 1; }
  # the postmaster's pid is the first line of postmaster.pid
  head -n 1 "$PG_DATA/postmaster.pid" > "$PID_FILE"
  echo "postgres.sh: started PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') (pid $(cat "$PID_FILE"))" \
    "on 127.0.0.1:$PG_PORT, data in $PG_DATA"
}

wait_healthy() {
  BIN="$(find_bindir)"
  await accepting 60 "$PID_FILE" "$PG_LOG" "accepting connections on 127.0.0.1:$PG_PORT"
  echo "postgres.sh: accepting connections on 127.0.0.1:$PG_PORT"
}

# The Dagster user and its database, made once; its password is set again from PG_DIR/password
# each time, so the file is always what the server expects. The SQL goes on stdin, never on a
# command line, because it holds the password.
create_database() {
  local psql=("$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U "$(superuser)" -d postgres)
  "${psql[@]}" <<SQL
SELECT format('CREATE ROLE %I LOGIN', '$DB_USER') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER')
\gexec
ALTER ROLE "$DB_USER" PASSWORD '$(cat "$PASSWORD_FILE")';
SELECT format('CREATE DATABASE %I OWNER %I', '$DB', '$DB_USER') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB')
\gexec
SQL
  echo "postgres.sh: database $DB of user $DB_USER (password in $PASSWORD_FILE)"
}

createdb() {  # $1 = database name: letters, digits and _ only
  [[ "${1:-}" =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "postgres.sh: createdb NAME ([a-z_][a-z0-9_]*)" >&2; exit 2; }
  BIN="$(find_bindir)"
  pid_of "$PID_FILE" >/dev/null || { echo "postgres.sh: not running (scripts/postgres.sh up)" >&2; exit 1; }
  "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U "$(superuser)" -d postgres \
    -c "CREATE DATABASE \"$1\" OWNER \"$DB_USER\""
  echo "postgres.sh: database $1 of user $DB_USER"
}

# fast shutdown (INT): TERM would wait for every client (a daemon) to disconnect; then an immediate one
# (QUIT), with recovery at the next start
stop() { stop_pid "$PID_FILE" server 60 INT QUIT "shut down immediately"; }

status() { status_of "$PID_FILE" "on 127.0.0.1:$PG_PORT"; }

# eval-able; the password is read from its file when evaluated, so it is never printed
env_exports() {
  echo "export DAGSTER_PG_HOST=127.0.0.1"
  echo "export DAGSTER_PG_PORT=$PG_PORT"
  echo "export DAGSTER_PG_DB=$DB"
  echo "export DAGSTER_PG_USERNAME=$DB_USER"
  echo "export DAGSTER_PG_PASSWORD=\"\$(cat '$PASSWORD_FILE')\""
}

case "${1:-}" in
  up) start; wait_healthy; create_database ;;
  stop) stop ;;
  status) status ;;
  env) env_exports ;;
  createdb) createdb "${2:-}" ;;
  *) echo "usage: scripts/postgres.sh up|stop|status|env|createdb NAME" >&2; exit 2 ;;
esac
