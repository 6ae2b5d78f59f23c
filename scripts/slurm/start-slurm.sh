#!/usr/bin/env bash
# aiofarm test cluster: single-node Slurm 22.05 (Debian 12) + slurmrestd with JWT auth, no systemd.
# Adapted from the team recipe (shared/recipes/slurm-single-node.sh) for the aiofarm Slurm suite.
#
#   ./start-slurm.sh            # idempotent: install if needed; if every daemon is already up and
#                               # answering, only refresh the token/env file; else (re)start all
#   ./start-slurm.sh restart    # force a full reconfigure + restart
#   ./start-slurm.sh stop       # stop the daemons this script started (by PID file)
#   ./start-slurm.sh status
#   ./start-slurm.sh stop-rest | start-rest   # only slurmrestd (the "REST down mid-wait" test)
#
# Must run as root (it installs packages and starts the daemons).
#
# Env knobs (all optional):
#   REST_HOST=127.0.0.1 REST_PORT=6820   slurmrestd TCP listen address (loopback only by default)
#   SLURM_FAKE_CPUS=32                   CPUs advertised for the node (SlurmdParameters=config_overrides
#                                        lets this exceed the real core count -> more concurrent jobs)
#   TOKEN_USER=root TOKEN_LIFESPAN=86400 JWT identity/lifetime printed at the end
#   CLEAN_STATE=1                        start slurmctld with -c (forget old jobs; job-id counter keeps counting)
#   SMOKE=1                              submit one job through REST and wait for COMPLETED
#   OUT_ENV=/tmp/slurm-env.sh   file receiving SLURM_REST_URL / SLURM_JWT / SLURM_USER
set -euo pipefail

REST_HOST=${REST_HOST:-127.0.0.1}
REST_PORT=${REST_PORT:-6820}
SLURM_FAKE_CPUS=${SLURM_FAKE_CPUS:-32}
TOKEN_USER=${TOKEN_USER:-root}
TOKEN_LIFESPAN=${TOKEN_LIFESPAN:-86400}
CLEAN_STATE=${CLEAN_STATE:-1}
# the node's features (OpenJD host requirement attributes become constraints on them)
NODE_FEATURES=${NODE_FEATURES:-linux,$(uname -m),fx,lab}
SMOKE=${SMOKE:-1}
OUT_ENV=${OUT_ENV:-/tmp/aiofarm-slurm-env.sh}
TOKEN_FILE=${TOKEN_FILE:-/tmp/aiofarm-slurm-token}   # just the JWT of TOKEN_USER (token_file= option)
# unprivileged user that owns jobs in the exec tests (root cannot add steps to others' jobs)
JOB_USER=${JOB_USER:-aiofarm}

CONF=/etc/slurm/slurm.conf
STATE=/var/lib/slurm/slurmctld
SPOOL=/var/lib/slurm/slurmd
LOGDIR=/var/log/slurm
JWT_KEY=$STATE/jwt_hs256.key
REST_USER=slurmrest
MUNGE_PID=/run/munge/munged.pid
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
REST_PID=/run/slurmrestd.pid
API=slurm/v0.0.38

# the daemons run on this host: commands as they are, pid files at their paths
in_root() { "$@"; }
LOG_TAG=start-slurm
PID_ROOT=""
. "$(dirname "$(readlink -f "$0")")/common.sh"

[ "$(id -u)" = 0 ] || die "must run as root"
LOCK=/run/aiofarm-start-slurm.lock

stop_all() {
  stop_pidfile "$REST_PID" slurmrestd
  stop_pidfile "$SLURMD_PID" slurmd
  stop_pidfile "$CTLD_PID" slurmctld
  stop_pidfile "$MUNGE_PID" munged
}

BASE="http://$REST_HOST:$REST_PORT"

start_rest() {
  # slurmrestd must not be root/SlurmUser (-u drops privileges after binding);
  # SLURM_JWT=daemon makes it forward the client's JWT to slurmctld (auth/jwt)
  # instead of its own munge identity ("Rejecting thread config token ..." otherwise).
  SLURM_JWT=daemon setsid nohup /usr/sbin/slurmrestd -u "$REST_USER" \
    -s openapi/v0.0.38 -a rest_auth/jwt "$REST_HOST:$REST_PORT" \
    >>"$LOGDIR/slurmrestd.log" 2>&1 </dev/null 9>&- &
  echo $! >"$REST_PID"
  local code
  for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/$API/ping" || true)
    [ "$code" = 401 ] && return 0   # up; unauthenticated requests get 401
    alive "$REST_PID" || { tail -20 "$LOGDIR/slurmrestd.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "slurmrestd did not answer on $BASE" >&2; exit 1
}

write_env() {
  TOKEN=$(scontrol token username="$TOKEN_USER" lifespan="$TOKEN_LIFESPAN" | sed 's/^SLURM_JWT=//')
  local jtok
  jtok=$(scontrol token username="$JOB_USER" lifespan="$TOKEN_LIFESPAN" | sed 's/^SLURM_JWT=//')
  mkdir -p "$(dirname "$OUT_ENV")"
  ( umask 077
    cat >"$OUT_ENV.tmp" <<EOF2
export SLURM_REST_URL=$BASE
export SLURM_REST_API=$BASE/$API
export SLURM_USER=$TOKEN_USER
export SLURM_JWT=$TOKEN
export SLURM_TOKEN_FILE=$TOKEN_FILE
export AIOFARM_SLURM_JOB_USER=$JOB_USER
export AIOFARM_SLURM_JOB_USER_JWT=$jtok
export SLURM_NODE_FEATURES=$NODE_FEATURES
EOF2
  )
  mv "$OUT_ENV.tmp" "$OUT_ENV"
  ( umask 077; printf '%s\n' "$TOKEN" >"$TOKEN_FILE.tmp" )
  mv "$TOKEN_FILE.tmp" "$TOKEN_FILE"
}

all_up() {
  alive "$MUNGE_PID" && alive "$CTLD_PID" && alive "$SLURMD_PID" && alive "$REST_PID" || return 1
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/$API/ping" || true)" = 401 ] || return 1
  case "$(node_state)" in idle|mixed|allocated|alloc*|mix*) return 0 ;; *) return 1 ;; esac
}

case "${1:-start}" in
  stop) stop_all; exit 0 ;;
  stop-rest) stop_pidfile "$REST_PID" slurmrestd; exit 0 ;;
  start-rest) take_lock "$LOCK"; alive "$REST_PID" || start_rest; echo "slurmrestd pid $(cat "$REST_PID")"; exit 0 ;;
  restart) FORCE=1; take_lock "$LOCK" ;;
  status)
    for f in "$MUNGE_PID" "$CTLD_PID" "$SLURMD_PID" "$REST_PID"; do
      if alive "$f"; then echo "$f: running pid $(cat "$f")"; else echo "$f: not running"; fi
    done
    command -v sinfo >/dev/null && sinfo || true
    exit 0 ;;
  start) FORCE=${FORCE:-0}; take_lock "$LOCK" ;;
  *) echo "usage: $0 [start|restart|stop|status|stop-rest|start-rest]" >&2; exit 2 ;;
esac

if [ "$FORCE" != 1 ] && command -v sinfo >/dev/null && all_up; then
  write_env
  log "cluster already up; refreshed $OUT_ENV"
  exit 0
fi

# ---------------------------------------------------------------- packages
PKGS="slurmctld slurmd slurm-client slurmrestd slurm-wlm-jwt-plugin munge curl"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  log "apt-get install:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  # postinst scripts try invoke-rc.d/systemctl; harmless without systemd (start is just skipped)
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/tmp/start-slurm-apt.log 2>&1 \
    || { tail -30 /tmp/start-slurm-apt.log; exit 1; }
  log "packages installed"
else
  log "packages already installed"
fi

# ---------------------------------------------------------------- users, dirs, keys
id slurm >/dev/null 2>&1 || useradd -r -M -d /nonexistent -s /usr/sbin/nologin slurm
# slurmrestd refuses to run as root or SlurmUser -> dedicated unprivileged user
id "$REST_USER" >/dev/null 2>&1 || useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$REST_USER"
id "$JOB_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$JOB_USER"

install -d -o slurm -g slurm -m 0755 "$STATE" "$LOGDIR"
install -d -o root -g root -m 0755 "$SPOOL" /etc/slurm
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge

if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key

if [ ! -s "$JWT_KEY" ]; then
  dd if=/dev/urandom of="$JWT_KEY" bs=32 count=1 status=none
fi
chown slurm:slurm "$JWT_KEY"; chmod 0600 "$JWT_KEY"

CLUSTER_NAME=localcluster CTLD_PORT=6817 SLURMD_PORT=6818 MIN_JOB_AGE=300
ACCOUNTING="AccountingStorageType=accounting_storage/none"
write_slurm_conf "$CONF"
log "wrote $CONF (CPUs=$SLURM_FAKE_CPUS, features $NODE_FEATURES)"

# ---------------------------------------------------------------- daemons
stop_all >/dev/null

start_munge
CTLD_ARGS=""
[ "$CLEAN_STATE" = 1 ] && CTLD_ARGS="-c"
start_controller "$CTLD_ARGS"

start_rest
log "slurmrestd pid $(cat $REST_PID) on $BASE"
write_env

if [ "$SMOKE" = 1 ]; then
  H=(-H "X-SLURM-USER-NAME: $TOKEN_USER" -H "X-SLURM-USER-TOKEN: $TOKEN")
  body='{"script":"#!/bin/bash\necho smoke $SLURM_JOB_ID\n","job":{"name":"smoke","current_working_directory":"/tmp","environment":{"PATH":"/usr/bin:/bin"},"standard_output":"/tmp/smoke-%j.out"}}'
  resp=$(curl -s "${H[@]}" -H 'Content-Type: application/json' -d "$body" "$BASE/$API/job/submit")
  jid=$(printf '%s' "$resp" | sed -n 's/.*"job_id": *\([0-9][0-9]*\).*/\1/p')
  [ -n "$jid" ] || { echo "smoke submit failed: $resp" >&2; exit 1; }
  st=""
  for _ in $(seq 1 100); do
    st=$(curl -s "${H[@]}" "$BASE/$API/job/$jid" | sed -n 's/.*"job_state": *"\([A-Z_]*\)".*/\1/p' | head -1)
    [ "$st" = COMPLETED ] && break
    sleep 0.1
  done
  [ "$st" = COMPLETED ] || { echo "smoke job $jid state=$st" >&2; exit 1; }
  log "smoke job $jid COMPLETED via REST (output: $(cat /tmp/smoke-$jid.out 2>/dev/null))"
fi

cat <<EOF

Slurm $(sinfo -V | awk '{print $2}') single-node cluster is up.
  PIDs: munged=$(cat $MUNGE_PID) slurmctld=$(cat $CTLD_PID) slurmd=$(cat $SLURMD_PID) slurmrestd=$(cat $REST_PID)
  Base URL : $BASE        (API prefix /$API, spec at $BASE/openapi/v3)
  Headers  : X-SLURM-USER-NAME: $TOKEN_USER
             X-SLURM-USER-TOKEN: \$SLURM_JWT from the env file
  Env file : $OUT_ENV   (source it: SLURM_REST_URL, SLURM_REST_API, SLURM_USER, SLURM_JWT)
  New token: scontrol token username=<user> lifespan=<seconds>
  Stop     : $0 stop
EOF
