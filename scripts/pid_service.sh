# Sourced, not run: what every script that runs a local service by its PID shares (es.sh, postgres.sh,
# redis.sh, s3proxy.sh, workers.sh). The caller sets SERVICE, its own name in messages ("redis.sh").
#
#   pid_of PID_FILE                         the PID, if that process is alive (status 1 otherwise)
#   status_of PID_FILE WHERE                "running (pid N) WHERE" or "not running"
#   await CHECK SECONDS PID_FILE LOG WHAT   run CHECK (a command) until it succeeds, 0.2 s apart: fail at once
#                                           if the process exits (LOG's tail shown), or once SECONDS have
#                                           passed ("not WHAT")
#   stop_pid PID_FILE NAME SECONDS [FIRST [LAST [LAST_SAID]]]
#                                           signal FIRST (TERM), wait SECONDS for the process to go, then
#                                           LAST (KILL); the pid file is removed either way
#
# A PID file can outlive its process (SIGKILL, a reboot) and its PID be reused later; kill -0 is the
# check every script used and stays the check: services here are started by these scripts only.

pid_of() {
  [ -f "$1" ] || return 1
  local pid; pid="$(cat "$1")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

status_of() {
  local pid
  if pid="$(pid_of "$1")"; then echo "$SERVICE: running (pid $pid) $2"; else echo "$SERVICE: not running"; fi
}

await() {
  local check="$1" seconds="$2" pid_file="$3" log="$4" what="$5" deadline=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$deadline" ]; do  # by the clock: a check may itself take seconds (curl -m 2)
    if $check; then return 0; fi
    if [ -n "$pid_file" ] && ! pid_of "$pid_file" >/dev/null; then
      echo "$SERVICE: exited while starting; last log lines:" >&2
      tail -n 30 "$log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.2
  done
  echo "$SERVICE: not $what after $seconds s; see $log" >&2
  exit 1
}

stop_pid() {
  local pid_file="$1" name="$2" seconds="$3" first="${4:-TERM}" last="${5:-KILL}" last_said="${6:-killed}" pid
  if ! pid="$(pid_of "$pid_file")"; then echo "$SERVICE: $name not running"; rm -f "$pid_file"; return; fi
  kill "-$first" "$pid"
  for _ in $(seq 1 $((seconds * 5))); do
    kill -0 "$pid" 2>/dev/null || { echo "$SERVICE: $name stopped (pid $pid)"; rm -f "$pid_file"; return; }
    sleep 0.2
  done
  kill "-$last" "$pid" 2>/dev/null || true
  rm -f "$pid_file"
  echo "$SERVICE: $name $last_said (pid $pid) after $seconds s"
}
