#!/usr/bin/env bash
# Elasticsearch for flows_pipeline, every node started and stopped by its PID.
#
#   install | start | wait | up | stop | status   the local node (what make es-up / es-down use)
#   secured-up | secured-down | secured-env       a secured single node: HTTP and transport TLS
#                                                 from a private CA, the elastic user's password
#   cluster-up | cluster-down                     three nodes n1..n3 (heap 512m, 1 processor each)
#   cluster-kill9 N | cluster-start N | cluster-pids   SIGKILL / restart node N; "nN PID URL" per node
#   other-major-up | other-major-down             a node of another major version (OTHER_MAJOR_VERSION)
#   stop-all                                      every node above that runs
#
# The official distribution comes from Maven Central (integ-test-zip: no bundled JDK) and
# lives in .es/ (git-ignored) with its data and logs. Security is switched off for the local
# node only (it would otherwise auto-enable TLS and a random password). It is run single-node on
# 127.0.0.1 with an explicit heap. Real clusters are reached by setting ES_URL instead; then
# `start` starts nothing. The other nodes exist for the test suite (`cluster` marker).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICE=es.sh
# shellcheck source=scripts/pid_service.sh
source "$ROOT/scripts/pid_service.sh"
ES_VERSION="${ES_VERSION:-9.2.8}"          # newest 9.x integ-test-zip that resolved from Maven Central
ES_PORT="${ES_PORT:-9200}"
ES_HEAP="${ES_HEAP:-1g}"
ES_DIR="${ES_DIR:-$ROOT/.es}"            # another folder runs another node (e.g. the benchmark's)
ES_DIR="$(realpath -m "$ES_DIR")"          # relative to the caller: the node is started from its home
ES_HOME="$ES_DIR/elasticsearch-$ES_VERSION"
ES_DATA="$ES_DIR/data"
ES_LOGS="$ES_DIR/logs"
PID_FILE="$ES_DIR/es.pid"
ES_USER="${ES_RUN_USER:-flowsearch}"       # Elasticsearch refuses to run as root
URL="http://127.0.0.1:$ES_PORT"
M2="${MAVEN_REPO:-$HOME/.m2/repository}"
SECURED_DIR="$ES_DIR/secured"
SECURED_PORT="${ES_SECURED_PORT:-9224}"
CLUSTER_DIR="$ES_DIR/cluster"
CLUSTER_PORT="${ES_CLUSTER_PORT:-9225}"                 # n1..n3 answer HTTP on this port and the next two
CLUSTER_TRANSPORT_PORT="${ES_CLUSTER_TRANSPORT_PORT:-9425}"  # and talk to each other on these
OTHER_MAJOR_VERSION="${OTHER_MAJOR_VERSION:-8.19.0}"
OTHER_MAJOR_DIR="$ES_DIR/major-${OTHER_MAJOR_VERSION%%.*}"
OTHER_MAJOR_PORT="${ES_OTHER_MAJOR_PORT:-9228}"
TEST_HEAP="${ES_TEST_HEAP:-512m}"

find_java() {
  if [ -n "${ES_JAVA_HOME:-}" ]; then echo "$ES_JAVA_HOME"; return; fi
  for d in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-21-jdk-amd64 /usr/lib/jvm/java-21-openjdk-amd64; do
    if [ -x "$d/bin/java" ]; then echo "$d"; return; fi
  done
  echo "es.sh: no Java 21+ found; set ES_JAVA_HOME (Elasticsearch 9 needs Java 21 or newer)" >&2
  exit 1
}

install_into() {  # $1 = version, $2 = folder that gets elasticsearch-$1
  local version="$1" home="$2/elasticsearch-$1"
  if [ -x "$home/bin/elasticsearch" ]; then echo "es.sh: Elasticsearch $version already in $home"; return; fi
  mkdir -p "$2"
  local zip="$M2/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$version/elasticsearch-$version.zip"
  [ -f "$zip" ] || mvn -q -B dependency:get \
    -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$version:zip" -Dtransitive=false
  rm -rf "$home.tmp" && mkdir -p "$home.tmp"
  unzip -q "$zip" -d "$home.tmp"
  mv "$home.tmp/elasticsearch-$version" "$home" && rmdir "$home.tmp"
  echo "es.sh: installed Elasticsearch $version in $home"
}

install() { install_into "$ES_VERSION" "$ES_DIR"; }


healthy() {
  curl -fsS -m 2 "$URL/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1
}

start() {
  if [ -n "${ES_URL:-}" ]; then echo "es.sh: ES_URL is set ($ES_URL): using that cluster, starting nothing"; return; fi
  install
  if pid="$(pid_of "$PID_FILE")"; then echo "es.sh: already running (pid $pid) at $URL"; return; fi
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
    if [ -z "${ES_URL:-}" ] && ! pid_of "$PID_FILE" >/dev/null; then
      echo "es.sh: Elasticsearch exited while starting; last log lines:" >&2
      tail -n 30 "$ES_LOGS"/*.log "$ES_LOGS/startup.out" 2>/dev/null >&2 || true
      exit 1
    fi
    sleep 1
  done
  echo "es.sh: not healthy at $url after 120 s; see $ES_LOGS" >&2
  exit 1
}

# SIGTERM, then SIGKILL after ES_STOP_TIMEOUT seconds (60: a node flushes its shards on the way
# down; a test node whose data is thrown away may be given less)
stop_pid_file() { stop_pid "$1" "$2" "${ES_STOP_TIMEOUT:-60}"; }  # $1 = pid file, $2 = name in messages

stop() { stop_pid_file "$PID_FILE" "local node"; }

status() { status_of "$PID_FILE" "at $URL"; }

# --- nodes for the test suite (`cluster` marker) ----------------------------------------------------

launch() {  # $1 = distribution, $2 = node folder (config/, data/, logs/, es.pid), $3 = heap, $4 = Java home
  local home="$1" dir="$2" run=()
  if [ "$(id -u)" = 0 ]; then
    id "$ES_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER"
    chown -R "$ES_USER" "$dir" "$home"
    run=(setpriv --reuid="$ES_USER" --regid="$(id -g "$ES_USER")" --init-groups)
  fi
  ES_PATH_CONF="$dir/config" ES_JAVA_HOME="$4" ES_JAVA_OPTS="-Xms$3 -Xmx$3" \
    "${run[@]}" "$home/bin/elasticsearch" -d -p "$dir/es.pid" > "$dir/logs/startup.out" 2>&1 \
    || { cat "$dir/logs/startup.out" >&2; exit 1; }
}

alive() { pid_of "$1" >/dev/null; }

# A fresh config/ from the distribution's, and the settings every test node shares in its
# elasticsearch.yml; the caller appends its own.
node_config() {  # $1 = distribution, $2 = node folder, $3 = cluster name, $4 = HTTP port
  mkdir -p "$2/data" "$2/logs"
  rm -rf "$2/config" && cp -r "$1/config" "$2/config"
  cat > "$2/config/elasticsearch.yml" <<YML
cluster.name: $3
network.host: 127.0.0.1
http.port: $4
path.data: $2/data
path.logs: $2/logs
node.processors: 1
xpack.ml.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
YML
}

wait_node() {  # $1 = name, $2 = pid file, $3 = log folder, then curl's arguments
  local name="$1" pid_file="$2" logs="$3"; shift 3
  for _ in $(seq 1 180); do
    if "$@" >/dev/null 2>&1; then echo "es.sh: $name started (pid $(cat "$pid_file"))"; return; fi
    alive "$pid_file" || break
    sleep 1
  done
  echo "es.sh: $name is not healthy; last log lines:" >&2
  tail -n 30 "$logs"/*.log "$logs/startup.out" >&2 2>/dev/null || true
  exit 1
}

# The integ-test-zip lacks the analysis-common module, and the .security index (native users, API
# keys, roles) has an "email" analyzer of pattern_capture, uax_url_email and unique: without them
# every API-key call fails with "Unknown filter type [pattern_capture]". No analysis-common for 9.x
# is published on Maven Central (org.codelibs' copies stop at 7.10.2), so the secured node gets a
# test-only plugin providing those three from Lucene's own classes, in its own copy of the
# distribution. A real distribution has the module; production needs nothing of this.
install_analysis_shim() {  # $1 = distribution, $2 = Java home
  local plugin="$1/plugins/analysis-shim" src="$SECURED_DIR/shim"
  [ -f "$plugin/analysis-shim.jar" ] && return
  rm -rf "$src" && mkdir -p "$src/flows" "$src/classes" "$plugin"
  cat > "$src/flows/AnalysisShim.java" <<'JAVA'
package flows;

import java.util.Map;
import java.util.function.UnaryOperator;
import java.util.regex.Pattern;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.email.UAX29URLEmailTokenizer;
import org.apache.lucene.analysis.miscellaneous.RemoveDuplicatesTokenFilter;
import org.apache.lucene.analysis.pattern.PatternCaptureGroupTokenFilter;
import org.elasticsearch.index.analysis.TokenFilterFactory;
import org.elasticsearch.index.analysis.TokenizerFactory;
import org.elasticsearch.indices.analysis.AnalysisModule.AnalysisProvider;
import org.elasticsearch.plugins.AnalysisPlugin;
import org.elasticsearch.plugins.Plugin;

/** Test only: the analysis-common components of the .security index's "email" analyzer. */
public class AnalysisShim extends Plugin implements AnalysisPlugin {
    private static TokenFilterFactory filter(String name, UnaryOperator<TokenStream> make) {
        return new TokenFilterFactory() {
            public String name() { return name; }
            public TokenStream create(TokenStream in) { return make.apply(in); }
        };
    }

    @Override
    public Map<String, AnalysisProvider<TokenFilterFactory>> getTokenFilters() {
        AnalysisProvider<TokenFilterFactory> capture = (index, env, name, settings) -> {
            Pattern[] patterns = settings.getAsList("patterns").stream().map(Pattern::compile).toArray(Pattern[]::new);
            boolean original = settings.getAsBoolean("preserve_original", true);
            return filter(name, in -> new PatternCaptureGroupTokenFilter(in, original, patterns));
        };
        AnalysisProvider<TokenFilterFactory> unique =
            (index, env, name, settings) -> filter(name, RemoveDuplicatesTokenFilter::new);
        return Map.of("pattern_capture", AnalysisPlugin.requiresAnalysisSettings(capture), "unique", unique);
    }

    @Override
    public Map<String, AnalysisProvider<TokenizerFactory>> getTokenizers() {
        return Map.of("uax_url_email",
            (index, env, name, settings) -> TokenizerFactory.newFactory(name, UAX29URLEmailTokenizer::new));
    }
}
JAVA
  "$2/bin/javac" --release 21 -cp "$1/lib/*" -d "$src/classes" "$src/flows/AnalysisShim.java"
  "$2/bin/jar" cf "$plugin/analysis-shim.jar" -C "$src/classes" .
  cat > "$plugin/plugin-descriptor.properties" <<PROPS
description=test only: pattern_capture, uax_url_email and unique for the .security index
version=1.0
name=analysis-shim
classname=flows.AnalysisShim
java.version=21
elasticsearch.version=$ES_VERSION
PROPS
  echo "es.sh: installed the test-only analysis-shim plugin into $plugin"
}

# A private CA and the node's certificate (localhost, 127.0.0.1), PEM, made by the distribution's
# own elasticsearch-certutil; clients get $SECURED_DIR/ca/ca.crt as ES_CA_CERTS.
make_certificates() {  # $1 = distribution, $2 = Java home
  [ -f "$SECURED_DIR/certs/node/node.crt" ] && return
  rm -rf "$SECURED_DIR/ca" "$SECURED_DIR/certs" && mkdir -p "$SECURED_DIR/certs"
  ES_JAVA_HOME="$2" "$1/bin/elasticsearch-certutil" ca --silent --pem --days 30 --out "$SECURED_DIR/certs/ca.zip"
  unzip -q -o "$SECURED_DIR/certs/ca.zip" -d "$SECURED_DIR"
  ES_JAVA_HOME="$2" "$1/bin/elasticsearch-certutil" cert --silent --pem --days 30 --name node \
    --ca-cert "$SECURED_DIR/ca/ca.crt" --ca-key "$SECURED_DIR/ca/ca.key" --dns localhost --ip 127.0.0.1 \
    --out "$SECURED_DIR/certs/node.zip"
  unzip -q -o "$SECURED_DIR/certs/node.zip" -d "$SECURED_DIR/certs"
}

# curl as elastic: the password goes in a config read from a pipe, never on a command line
secured_curl() {
  curl -K <(printf 'user = "elastic:%s"\n' "$(cat "$SECURED_DIR/elastic.password")") \
    --cacert "$SECURED_DIR/ca/ca.crt" "$@"
}

secured_up() {
  local java home="$SECURED_DIR/elasticsearch-$ES_VERSION"
  java="$(find_java)"
  if alive "$SECURED_DIR/es.pid"; then echo "es.sh: secured node already running (pid $(cat "$SECURED_DIR/es.pid"))"; return; fi
  install_into "$ES_VERSION" "$SECURED_DIR"
  install_analysis_shim "$home" "$java"
  make_certificates "$home" "$java"
  node_config "$home" "$SECURED_DIR" flows-secured "$SECURED_PORT"
  mkdir -p "$SECURED_DIR/config/certs"
  cp "$SECURED_DIR/ca/ca.crt" "$SECURED_DIR/certs/node/node.crt" "$SECURED_DIR/certs/node/node.key" \
    "$SECURED_DIR/config/certs/"
  cat >> "$SECURED_DIR/config/elasticsearch.yml" <<YML
discovery.type: single-node
transport.port: 0
xpack.security.enabled: true
xpack.security.enrollment.enabled: false
xpack.security.authc.api_key.enabled: true
xpack.security.http.ssl.enabled: true
xpack.security.http.ssl.key: certs/node.key
xpack.security.http.ssl.certificate: certs/node.crt
xpack.security.http.ssl.certificate_authorities: [certs/ca.crt]
xpack.security.transport.ssl.enabled: true
xpack.security.transport.ssl.verification_mode: certificate
xpack.security.transport.ssl.key: certs/node.key
xpack.security.transport.ssl.certificate: certs/node.crt
xpack.security.transport.ssl.certificate_authorities: [certs/ca.crt]
YML
  # the elastic user's password: the keystore's bootstrap.password, random, kept in a file of the node's
  [ -s "$SECURED_DIR/elastic.password" ] \
    || (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 24 > "$SECURED_DIR/elastic.password")
  ES_PATH_CONF="$SECURED_DIR/config" ES_JAVA_HOME="$java" "$home/bin/elasticsearch-keystore" create -s >/dev/null
  ES_PATH_CONF="$SECURED_DIR/config" ES_JAVA_HOME="$java" \
    "$home/bin/elasticsearch-keystore" add -x -f bootstrap.password < "$SECURED_DIR/elastic.password" >/dev/null
  launch "$home" "$SECURED_DIR" "$TEST_HEAP" "$java"
  wait_node "secured node at https://localhost:$SECURED_PORT" "$SECURED_DIR/es.pid" "$SECURED_DIR/logs" \
    secured_curl -fsS -m 2 "https://localhost:$SECURED_PORT/_cluster/health?wait_for_status=yellow&timeout=1s"
  echo "es.sh: CA $SECURED_DIR/ca/ca.crt; elastic's password in $SECURED_DIR/elastic.password"
}

secured_env() {
  echo "ES_URL=https://localhost:$SECURED_PORT"
  echo "ES_CA_CERTS=$SECURED_DIR/ca/ca.crt"
  echo "ES_USERNAME=elastic"
  echo "ES_PASSWORD_FILE=$SECURED_DIR/elastic.password"
}

cluster_http() { echo "http://127.0.0.1:$((CLUSTER_PORT + $1 - 1))"; }

cluster_urls() { echo "$(cluster_http 1),$(cluster_http 2),$(cluster_http 3)"; }

cluster_node_up() {  # $1 = node number 1..3
  local n="$1" dir="$CLUSTER_DIR/n$1" java t="$CLUSTER_TRANSPORT_PORT"
  java="$(find_java)"
  if alive "$dir/es.pid"; then echo "es.sh: n$n already running (pid $(cat "$dir/es.pid"))"; return; fi
  node_config "$ES_HOME" "$dir" flows-three "$((CLUSTER_PORT + n - 1))"
  cat >> "$dir/config/elasticsearch.yml" <<YML
node.name: n$n
transport.port: $((t + n - 1))
discovery.seed_hosts: ["127.0.0.1:$t", "127.0.0.1:$((t + 1))", "127.0.0.1:$((t + 2))"]
cluster.initial_master_nodes: ["n1", "n2", "n3"]
xpack.security.enabled: false
# the shortest interval (default 30s) at which the master reads the nodes' disks: the disk watermark
# test enables the threshold and waits for the flood-stage block, which comes at the next read
cluster.info.update.interval: 10s
YML
  launch "$ES_HOME" "$dir" "$TEST_HEAP" "$java"
  echo "es.sh: n$n started (pid $(cat "$dir/es.pid")) at $(cluster_http "$n")"
}

cluster_up() {  # a fresh cluster: the tests kill nodes and change its settings
  install
  alive "$CLUSTER_DIR/n1/es.pid" || alive "$CLUSTER_DIR/n2/es.pid" || alive "$CLUSTER_DIR/n3/es.pid" \
    || rm -rf "$CLUSTER_DIR"/n*/data
  # at once: each start waits for its node's HTTP, ~30 s of JVM start-up on this 2-core machine
  local jobs=() job
  for n in 1 2 3; do cluster_node_up "$n" & jobs+=("$!"); done
  for job in "${jobs[@]}"; do wait "$job"; done
  for _ in $(seq 1 180); do
    for n in 1 2 3; do
      if curl -fsS -m 3 "$(cluster_http "$n")/_cluster/health?wait_for_status=green&wait_for_nodes=3&timeout=1s" \
          >/dev/null 2>&1; then
        echo "es.sh: 3-node cluster green at $(cluster_urls)"
        return
      fi
    done
    sleep 1
  done
  echo "es.sh: the 3-node cluster is not green with 3 nodes after 180 s; logs in $CLUSTER_DIR/n*/logs" >&2
  exit 1
}

cluster_down() {  # the three at once: each takes seconds to shut down
  local jobs=() job
  for n in 1 2 3; do stop_pid_file "$CLUSTER_DIR/n$n/es.pid" "n$n" & jobs+=("$!"); done
  for job in "${jobs[@]}"; do wait "$job"; done
}

cluster_kill9() {
  local n="${1:?node number 1..3}" pid
  pid="$(cat "$CLUSTER_DIR/n$n/es.pid")"
  kill -9 "$pid"
  echo "es.sh: n$n SIGKILLed (pid $pid)"
}

cluster_pids() {
  for n in 1 2 3; do echo "n$n $(cat "$CLUSTER_DIR/n$n/es.pid" 2>/dev/null || echo -) $(cluster_http "$n")"; done
}

other_major_up() {
  local dir="$OTHER_MAJOR_DIR" home="$OTHER_MAJOR_DIR/elasticsearch-$OTHER_MAJOR_VERSION" java
  java="${OTHER_MAJOR_JAVA_HOME:-$(find_java)}"
  if alive "$dir/es.pid"; then echo "es.sh: $OTHER_MAJOR_VERSION already running (pid $(cat "$dir/es.pid"))"; return; fi
  install_into "$OTHER_MAJOR_VERSION" "$dir"
  node_config "$home" "$dir" flows-other-major "$OTHER_MAJOR_PORT"
  cat >> "$dir/config/elasticsearch.yml" <<YML
discovery.type: single-node
transport.port: 0
xpack.security.enabled: false
YML
  launch "$home" "$dir" "$TEST_HEAP" "$java"
  wait_node "Elasticsearch $OTHER_MAJOR_VERSION at http://127.0.0.1:$OTHER_MAJOR_PORT" "$dir/es.pid" "$dir/logs" \
    curl -fsS -m 2 "http://127.0.0.1:$OTHER_MAJOR_PORT/_cluster/health?wait_for_status=yellow&timeout=1s"
}

stop_all() {
  stop_pid_file "$SECURED_DIR/es.pid" "secured node"
  cluster_down
  stop_pid_file "$OTHER_MAJOR_DIR/es.pid" "Elasticsearch $OTHER_MAJOR_VERSION"
  stop
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  wait) wait_healthy ;;
  up) start; wait_healthy ;;
  stop) stop ;;
  status) status ;;
  secured-up) secured_up ;;
  secured-down) stop_pid_file "$SECURED_DIR/es.pid" "secured node" ;;
  secured-env) secured_env ;;
  cluster-up) cluster_up ;;
  cluster-down) cluster_down ;;
  cluster-kill9) cluster_kill9 "${2:-}" ;;
  cluster-start) cluster_node_up "${2:?node number 1..3}" ;;
  cluster-pids) cluster_pids ;;
  cluster-urls) cluster_urls ;;
  other-major-up) other_major_up ;;
  other-major-down) stop_pid_file "$OTHER_MAJOR_DIR/es.pid" "Elasticsearch $OTHER_MAJOR_VERSION" ;;
  stop-all) stop_all ;;
  *) echo "usage: scripts/es.sh install|start|wait|up|stop|status | secured-up|secured-down|secured-env" \
       "| cluster-up|cluster-down|cluster-kill9 N|cluster-start N|cluster-pids|cluster-urls" \
       "| other-major-up|other-major-down | stop-all" >&2; exit 2 ;;
esac
