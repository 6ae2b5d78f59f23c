#!/usr/bin/env bash
# aiofarm test head: a single-node Ray 2.60 head on loopback for the Ray suite.
# Adapted from the team recipe (shared/recipes/ray-single-node.sh).
#
#   start-ray.sh start DIR     install Ray if needed, start a head whose state lives in DIR
#                              (created 0700), wait for the Jobs API, print its URL; the
#                              head's token (token auth is on) is in DIR/token
#   start-ray.sh stop DIR      stop the head started in DIR and everything it started, by
#                              pid (never `ray stop`: that stops every Ray on the host)
#   start-ray.sh venv          install Ray if needed, print the venv path
#
# Knobs (env): AIOFARM_RAY_VENV (/tmp/aiofarm-ray/venv), AIOFARM_RAY_SPEC ("ray[default]==2.60.0"),
#   AIOFARM_RAY_CPUS (2), AIOFARM_RAY_WAIT_S (180), PYTHON (python3),
#   AIOFARM_RAY_OWNER_PID: when that process is gone, the head is stopped (a test run
#   killed before its clean-up leaves no Ray behind).
set -euo pipefail

VENV=${AIOFARM_RAY_VENV:-/tmp/aiofarm-ray/venv}
SPEC=${AIOFARM_RAY_SPEC:-"ray[default]==2.60.0"}
CPUS=${AIOFARM_RAY_CPUS:-2}
WAIT_S=${AIOFARM_RAY_WAIT_S:-180}
PY=${PYTHON:-python3}

log() { echo "[start-ray $(date +%T)] $*" >&2; }

install() {
  if "$VENV/bin/python" -c 'import ray, ray.dashboard.modules.job.job_head' 2>/dev/null; then
    return
  fi
  log "installing $SPEC into $VENV (about a minute, about 400 MB)"
  mkdir -p "$(dirname "$VENV")"
  # one installer at a time: two test runs may start together
  exec 8>"$(dirname "$VENV")/.install.lock"
  flock 8
  if ! "$VENV/bin/python" -c 'import ray' 2>/dev/null; then
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "$SPEC" 2>&1 | { grep -v '^WARNING: Location' || true; } >&2
  fi
  exec 8>&-
}

api_up() {  # api_up URL TOKEN
  "$VENV/bin/python" - "$1" "$2" <<'PYEOF' 2>/dev/null
import sys, urllib.request
for path in ("/api/version", "/api/jobs/"):
    req = urllib.request.Request(sys.argv[1] + path, headers={"Authorization": "Bearer " + sys.argv[2]})
    with urllib.request.urlopen(req, timeout=3) as r:
        assert r.status == 200
PYEOF
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

alive() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]; }

descendants() {  # every live descendant of $1 (not $1 itself)
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END { for (p in parent) { q = p; while (q in parent && q != root && q > 1) q = parent[q]; if (q == root && p != root) print p } }'
}

stop_head() {
  local dir=$1 pid pids p
  [ -s "$dir/head.pid" ] || { log "no head.pid in $dir"; return 0; }
  pid=$(cat "$dir/head.pid")
  if alive "$pid"; then
    # note the whole tree first: `ray start --block` kills its own processes on SIGTERM,
    # and whatever outlives it (job drivers in their own sessions) is killed here
    pids="$(descendants "$pid") $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
    for p in $pids; do alive "$p" && kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 1 30); do
      left=""; for p in $pids; do alive "$p" && left="$left $p"; done
      [ -z "$left" ] && break; sleep 0.1
    done
    for p in $pids; do alive "$p" && kill -KILL "$p" 2>/dev/null || true; done
    log "stopped head (pid $pid and $(echo "$pids" | wc -w) processes)"
  fi
  rm -f "$dir/head.pid" "$dir/url"
}

start_head() {
  local dir=$1
  install
  mkdir -p -m 700 "$dir"
  chmod 700 "$dir"
  mkdir -p "$dir/tmp" "$dir/jobs"
  local dash gcs client agent url token
  dash=$(free_port); gcs=$(free_port); client=$(free_port); agent=$(free_port)
  url="http://127.0.0.1:$dash"
  token=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))')
  (umask 077; echo "$token" > "$dir/token")
  log "starting head (dashboard $dash), state in $dir"
  (
    cd "$dir/jobs"
    # jobs inherit this environment: the venv first, so `python` in an entrypoint has ray
    export PATH="$VENV/bin:$PATH"
    # Linux Ray rewrites 127.0.0.1 to the routable IP; this (macOS/Windows) switch keeps
    # node, GCS, raylet and agents on loopback
    export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
    export RAY_USAGE_STATS_ENABLED=0
    # token authentication (Ray >= 2.52): the Jobs API wants "Authorization: Bearer <token>"
    export RAY_AUTH_MODE=token
    export RAY_AUTH_TOKEN="$token"
    unset RAY_AUTH_TOKEN_PATH RAY_ADDRESS
    # --block: the head's processes stay children of this one, so stop finds them by pid
    exec setsid "$VENV/bin/ray" start --head --block \
      --node-ip-address 127.0.0.1 --port "$gcs" \
      --include-dashboard true --dashboard-host 127.0.0.1 --dashboard-port "$dash" \
      --dashboard-agent-listen-port "$agent" --ray-client-server-port "$client" \
      --num-cpus "$CPUS" --object-store-memory 268435456 \
      --temp-dir "$dir/tmp" --disable-usage-stats --log-color false
  ) >"$dir/ray-start.log" 2>&1 9>&- 8>&- &
  echo $! > "$dir/head.pid"
  local deadline=$(( $(date +%s) + WAIT_S ))
  until api_up "$url" "$token"; do
    if ! alive "$(cat "$dir/head.pid")"; then
      log "ray start exited:"; tail -30 "$dir/ray-start.log" >&2; rm -f "$dir/head.pid"; exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "the Jobs API is not up after ${WAIT_S}s"; tail -30 "$dir/ray-start.log" >&2
      stop_head "$dir"; exit 1
    fi
    sleep 0.2
  done
  echo "$url" > "$dir/url"
  if [ -n "${AIOFARM_RAY_OWNER_PID:-}" ]; then
    # a watcher in its own session: stops this head once the owner has gone
    setsid sh -c 'while kill -0 "$1" 2>/dev/null && [ -e "$2/head.pid" ]; do sleep 2; done; [ -e "$2/head.pid" ] && exec "$3" stop "$2"' \
      watcher "$AIOFARM_RAY_OWNER_PID" "$dir" "$(readlink -f "$0")" </dev/null >/dev/null 2>&1 9>&- 8>&- &
  fi
  log "head up at $url"
  echo "$url"
}

case "${1:-}" in
  start) [ -n "${2:-}" ] || { echo "usage: $0 start DIR" >&2; exit 2; }; start_head "$2" ;;
  stop) [ -n "${2:-}" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop_head "$2" ;;
  venv) install; echo "$VENV" ;;
  *) echo "usage: $0 start DIR | stop DIR | venv" >&2; exit 2 ;;
esac
