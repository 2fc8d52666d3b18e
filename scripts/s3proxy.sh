#!/usr/bin/env bash
# S3-compatible storage for flows_pipeline's tables on one machine: s3proxy, started and stopped by its PID.
#
#   install  the pinned s3proxy jar from Maven Central, checked against its SHA-256, into S3_DIR
#   start    start it on 127.0.0.1:S3_PORT (filesystem backend in S3_DIR/data), the bucket S3_BUCKET made
#   up       start, then wait until it answers
#   stop     stop it by its PID (SIGTERM, SIGKILL after 15 s)
#   status   is it running, and on which port
#   env      the exports a run needs:  eval "$(scripts/s3proxy.sh env)"  (the secret is read from its
#            file when evaluated, never printed)
#
# s3proxy (org.gaul:s3proxy, the jar-with-dependencies) serves the S3 API over jclouds' filesystem-nio2
# provider: a bucket is a folder of S3_DIR/data, an object a file. It lives in S3_DIR (.s3/,
# git-ignored): the jar, data/, s3proxy.properties, s3proxy.log, s3proxy.pid and the credentials
# (an access key and a random secret, made once; the secret only in S3_DIR/secret and the
# properties file, both mode 600). Another S3_DIR and S3_PORT run another server: the test suite's
# is .s3/test on a free port. Real deployments point FLOWS_S3_ENDPOINT_URL at their own storage
# instead (README, "Tables on S3").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICE=s3proxy.sh
# shellcheck source=scripts/pid_service.sh
source "$ROOT/scripts/pid_service.sh"
S3PROXY_VERSION="${S3PROXY_VERSION:-2.7.0}"   # newest that resolved from Maven Central; runs on Java 17
# SHA-256 of s3proxy-2.7.0-jar-with-dependencies.jar: Maven checks only its SHA-1, this pins the bytes
S3PROXY_SHA256="${S3PROXY_SHA256:-f3ff95bd78a7afbbcd5da56f8f6180ef71ad00601392f7e2f5a220c97ad69eef}"
S3_DIR="$(realpath -m "${S3_DIR:-$ROOT/.s3}")"
S3_PORT="${S3_PORT:-9300}"
S3_BUCKET="${S3_BUCKET:-flows}"
S3_HEAP="${S3_HEAP:-256m}"
JAR="$S3_DIR/s3proxy-$S3PROXY_VERSION.jar"
DATA="$S3_DIR/data"
LOG="$S3_DIR/s3proxy.log"
PID_FILE="$S3_DIR/s3proxy.pid"
PROPERTIES="$S3_DIR/s3proxy.properties"
ACCESS_KEY_FILE="$S3_DIR/access-key"
SECRET_FILE="$S3_DIR/secret"
URL="http://127.0.0.1:$S3_PORT"
M2="${MAVEN_REPO:-$HOME/.m2/repository}"

find_java() {
  if [ -n "${S3_JAVA_HOME:-}" ]; then echo "$S3_JAVA_HOME/bin/java"; return; fi
  if command -v java >/dev/null 2>&1; then command -v java; return; fi
  for d in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/java-17-openjdk-amd64; do
    if [ -x "$d/bin/java" ]; then echo "$d/bin/java"; return; fi
  done
  echo "s3proxy.sh: no Java found; install a JDK 17+ or set S3_JAVA_HOME" >&2
  exit 1
}

install() {
  if [ -f "$JAR" ]; then echo "s3proxy.sh: s3proxy $S3PROXY_VERSION already in $JAR"; return; fi
  mkdir -p "$S3_DIR"
  local cached="$M2/org/gaul/s3proxy/$S3PROXY_VERSION/s3proxy-$S3PROXY_VERSION-jar-with-dependencies.jar"
  [ -f "$cached" ] || mvn -q -B dependency:get \
    -Dartifact="org.gaul:s3proxy:$S3PROXY_VERSION:jar:jar-with-dependencies" -Dtransitive=false
  local actual; actual="$(sha256sum "$cached" | cut -d' ' -f1)"
  if [ "$actual" != "$S3PROXY_SHA256" ]; then
    echo "s3proxy.sh: $cached has SHA-256 $actual, expected $S3PROXY_SHA256; delete it and run install again" >&2
    exit 1
  fi
  cp "$cached" "$JAR.tmp" && mv "$JAR.tmp" "$JAR"
  echo "s3proxy.sh: installed s3proxy $S3PROXY_VERSION in $JAR (SHA-256 checked)"
}


# any HTTP answer: an anonymous request gets 403, which is an answer
answering() { [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$URL/" 2>/dev/null)" != "000" ]; }

credentials() {
  mkdir -p "$S3_DIR"
  [ -s "$ACCESS_KEY_FILE" ] || echo "flows-dev-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$ACCESS_KEY_FILE"
  [ -s "$SECRET_FILE" ] \
    || (umask 077; head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 32 > "$SECRET_FILE")
  # the properties hold the secret too: written with the same mode, never echoed (jclouds.identity and
  # .credential are the local backend's, which checks none)
  (umask 077; cat > "$PROPERTIES" <<PROPERTIES
s3proxy.endpoint=$URL
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$(cat "$ACCESS_KEY_FILE")
s3proxy.credential=$(cat "$SECRET_FILE")
jclouds.provider=filesystem-nio2
jclouds.filesystem.basedir=$DATA
jclouds.identity=local
jclouds.credential=local
PROPERTIES
  )
}

start() {
  install
  if pid="$(pid_of "$PID_FILE")"; then echo "s3proxy.sh: already running (pid $pid) at $URL"; return; fi
  if answering; then echo "s3proxy.sh: something already answers at $URL but it is not ours (no pid file); stop it or set S3_PORT" >&2; exit 1; fi
  local java; java="$(find_java)"
  credentials
  mkdir -p "$DATA/$S3_BUCKET"  # the filesystem provider's bucket is a folder
  # heap explicit: the JVM would otherwise size itself from the machine's RAM, shared with the pipeline
  nohup "$java" "-Xmx$S3_HEAP" -jar "$JAR" --properties "$PROPERTIES" > "$LOG" 2>&1 < /dev/null &
  echo "$!" > "$PID_FILE"
  echo "s3proxy.sh: started s3proxy $S3PROXY_VERSION (pid $(cat "$PID_FILE")) at $URL, bucket $S3_BUCKET in $DATA"
}

wait_healthy() {
  await answering 60 "$PID_FILE" "$LOG" "answering at $URL"
  echo "s3proxy.sh: answering at $URL"
}

stop() { stop_pid "$PID_FILE" s3proxy 15; }

status() { status_of "$PID_FILE" "at $URL"; }

# eval-able; the secret is read from its file when evaluated, so it is never printed. The AWS SDK's
# default request and response checksums (trailing x-amz-checksum-*) are ones s3proxy does not
# implement (501 NotImplemented on UploadPart, a failed GetObject): "when_required" sends none.
env_exports() {
  echo "export FLOWS_STORAGE_ROOT=s3://$S3_BUCKET/tables"
  echo "export FLOWS_S3_ENDPOINT_URL=$URL"
  echo "export AWS_REGION=us-east-1"
  echo "export AWS_ACCESS_KEY_ID=\"\$(cat '$ACCESS_KEY_FILE')\""
  echo "export AWS_SECRET_ACCESS_KEY=\"\$(cat '$SECRET_FILE')\""
  echo "export AWS_REQUEST_CHECKSUM_CALCULATION=when_required"
  echo "export AWS_RESPONSE_CHECKSUM_VALIDATION=when_required"
  echo "export AWS_EC2_METADATA_DISABLED=true"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  up) start; wait_healthy ;;
  stop) stop ;;
  status) status ;;
  env) env_exports ;;
  *) echo "usage: scripts/s3proxy.sh install|start|up|stop|status|env" >&2; exit 2 ;;
esac
