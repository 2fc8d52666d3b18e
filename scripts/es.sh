#!/usr/bin/env bash
# Local Elasticsearch for flows_pipeline: install | start | wait | stop | status.
#
# The official distribution comes from Maven Central (integ-test-zip: no bundled JDK) and
# lives in .es/ (git-ignored) with its data and logs. Security is switched off for this local
# node only (it would otherwise auto-enable TLS and a random password). It is run single-node on 127.0.0.1 with an explicit heap. Real clusters are
# reached by setting ES_URL instead; then nothing here is started.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ES_VERSION="${ES_VERSION:-9.2.8}"          # newest 9.x integ-test-zip that resolved from Maven Central
ES_PORT="${ES_PORT:-9200}"
ES_HEAP="${ES_HEAP:-1g}"
ES_DIR="${ES_DIR:-$ROOT/.es}"            # another folder runs another node (e.g. the benchmark's)
ES_HOME="$ES_DIR/elasticsearch-$ES_VERSION"
ES_DATA="$ES_DIR/data"
ES_LOGS="$ES_DIR/logs"
PID_FILE="$ES_DIR/es.pid"
ES_USER="${ES_RUN_USER:-flowsearch}"       # Elasticsearch refuses to run as root
URL="http://127.0.0.1:$ES_PORT"

find_java() {
  if [ -n "${ES_JAVA_HOME:-}" ]; then echo "$ES_JAVA_HOME"; return; fi
  for d in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-21-jdk-amd64 /usr/lib/jvm/java-21-openjdk-amd64; do
    if [ -x "$d/bin/java" ]; then echo "$d"; return; fi
  done
  echo "es.sh: no Java 21+ found; set ES_JAVA_HOME (Elasticsearch 9 needs Java 21 or newer)" >&2
  exit 1
}

install() {
  if [ -x "$ES_HOME/bin/elasticsearch" ]; then echo "es.sh: Elasticsearch $ES_VERSION already in $ES_HOME"; return; fi
  mkdir -p "$ES_DIR"
  local artifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip"
  mvn -q -B dependency:get -Dartifact="$artifact" -Dtransitive=false
  local zip="${MAVEN_REPO:-$HOME/.m2/repository}/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$ES_VERSION/elasticsearch-$ES_VERSION.zip"
  rm -rf "$ES_HOME.tmp" && mkdir -p "$ES_HOME.tmp"
  unzip -q "$zip" -d "$ES_HOME.tmp"
  mv "$ES_HOME.tmp/elasticsearch-$ES_VERSION" "$ES_HOME" && rmdir "$ES_HOME.tmp"
  echo "es.sh: installed Elasticsearch $ES_VERSION in $ES_HOME"
}

running_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid; pid="$(cat "$PID_FILE")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

healthy() {
  curl -fsS -m 2 "$URL/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1
}

start() {
  if [ -n "${ES_URL:-}" ]; then echo "es.sh: ES_URL is set ($ES_URL): using that cluster, starting nothing"; return; fi
  install
  if pid="$(running_pid)"; then echo "es.sh: already running (pid $pid) at $URL"; return; fi
  if healthy; then echo "es.sh: something already answers at $URL but it is not ours (no pid file); stop it or set ES_PORT" >&2; exit 1; fi
  mkdir -p "$ES_DATA" "$ES_LOGS"
  local java_home; java_home="$(find_java)"
  local run=()
  if [ "$(id -u)" = 0 ]; then
    id "$ES_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER"
    chown -R "$ES_USER" "$ES_DIR"
    run=(setpriv --reuid="$ES_USER" --regid="$(id -g "$ES_USER")" --init-groups)
  fi
  # Heap explicit: ES would otherwise size itself from the machine's RAM, shared with the pipeline.
  ES_JAVA_HOME="$java_home" ES_JAVA_OPTS="-Xms$ES_HEAP -Xmx$ES_HEAP ${ES_EXTRA_JAVA_OPTS:-}" \
    "${run[@]}" "$ES_HOME/bin/elasticsearch" -d -p "$PID_FILE" \
      -E discovery.type=single-node \
      -E network.host=127.0.0.1 \
      -E http.port="$ES_PORT" \
      -E transport.port=0 \
      -E path.data="$ES_DATA" \
      -E path.logs="$ES_LOGS" \
      -E cluster.name=flows-local \
      -E xpack.security.enabled=false \
      -E xpack.ml.enabled=false \
      -E action.destructive_requires_name=false \
      -E cluster.routing.allocation.disk.threshold_enabled=false \
      > "$ES_LOGS/startup.out" 2>&1 || { cat "$ES_LOGS/startup.out" >&2; exit 1; }
  echo "es.sh: started Elasticsearch $ES_VERSION (pid $(cat "$PID_FILE")) at $URL, heap $ES_HEAP, data in $ES_DATA"
}

wait_healthy() {
  local url="${ES_URL:-$URL}"
  for _ in $(seq 1 120); do
    if curl -fsS -m 2 "$url/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1; then
      echo "es.sh: healthy at $url: version $(curl -fsS -m 2 "$url/_nodes/_local?filter_path=nodes.*.version" | grep -o '"version":"[^"]*"' | cut -d'"' -f4)"
      return
    fi
    if [ -z "${ES_URL:-}" ] && ! running_pid >/dev/null; then
      echo "es.sh: Elasticsearch exited while starting; last log lines:" >&2
      tail -n 30 "$ES_LOGS"/*.log "$ES_LOGS/startup.out" 2>/dev/null >&2 || true
      exit 1
    fi
    sleep 1
  done
  echo "es.sh: not healthy at $url after 120 s; see $ES_LOGS" >&2
  exit 1
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then echo "es.sh: not running"; rm -f "$PID_FILE"; return; fi
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { echo "es.sh: stopped (pid $pid)"; rm -f "$PID_FILE"; return; }; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
  echo "es.sh: killed (pid $pid) after 60 s"
}

status() {
  if pid="$(running_pid)"; then echo "es.sh: running (pid $pid) at $URL"; else echo "es.sh: not running"; fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  wait) wait_healthy ;;
  up) start; wait_healthy ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: scripts/es.sh install|start|wait|up|stop|status" >&2; exit 2 ;;
esac
