#!/usr/bin/env bash
# aiofarm test clusters of current Slurm: single-node Slurm 24.11 (Debian trixie) or 26.05
# (Debian sid) in a chroot on a Debian 12 host, beside the host's 22.05 cluster (start-slurm.sh),
# with munge, slurmctld, slurmd, slurmdbd + MariaDB (accounting), slurmrestd with JWT auth.
# Adapted from the team recipe (shared/recipes/slurm-modern.sh) for the aiofarm Slurm suite.
#
#   CLUSTER=24.11 ./start-slurm-modern.sh          # idempotent: bootstrap the chroot if needed;
#                                                  # if every daemon answers, only refresh the env
#   CLUSTER=26.05 ./start-slurm-modern.sh restart  # forget the controller's jobs, restart all
#   CLUSTER=24.11 ./start-slurm-modern.sh stop     # cancel jobs, stop the daemons (PID files), unmount
#   CLUSTER=24.11 ./start-slurm-modern.sh stop-rest | start-rest | status | purge
#
# CLUSTER picks the Debian suite, the chroot and the ports (none collide with the host's 6817-6820):
#   24.11: SUITE=trixie /opt/aiofarm-slurm/24.11 ctld 7817 slurmd 7818 dbd 7819 rest 7820
#   26.05: SUITE=sid    /opt/aiofarm-slurm/26.05 ctld 7827 slurmd 7828 dbd 7829 rest 7830
# MariaDB listens on a unix socket inside the chroot only (skip-networking).
# /proc /sys /dev /tmp are bind-mounted in (job output under /tmp is seen at the same path
# on the host). Jobs run INSIDE the chroot: only its programs exist there.
# Client commands: $ROOT/host-bin/{srun,sbatch,sattach,scontrol,...} run the chroot's client
# (as root: chroot(2) needs it). The env file puts that directory first on PATH.
#
# Env knobs (not SLURM_*: the env file exports those): AIOFARM_SLURM_CHROOT SUITE MIRROR CTLD_PORT SLURMD_PORT DBD_PORT REST_PORT REST_HOST
#   SLURM_FAKE_CPUS=32 TOKEN_USER=root JOB_USER=aiofarm TOKEN_LIFESPAN=86400 MIN_JOB_AGE=10
#   OUT_ENV=/tmp/aiofarm-slurm-$CLUSTER-env.sh
#   EXTRA_BINDS="/dir ..."   more host directories bound into the chroot at the same path (the
#                            test suite binds the checkout and its Python, so jobs can run
#                            the client's Python functions)
set -euo pipefail

CLUSTER=${CLUSTER:-24.11}
case "$CLUSTER" in
  24.11) D_SUITE=trixie; D_BASE=7817 ;;
  26.05) D_SUITE=sid; D_BASE=7827 ;;
  *) echo "CLUSTER must be 24.11 or 26.05 (got '$CLUSTER')" >&2; exit 2 ;;
esac
ROOT=${AIOFARM_SLURM_CHROOT:-/opt/aiofarm-slurm/$CLUSTER}
SUITE=${SUITE:-$D_SUITE}
CTLD_PORT=${CTLD_PORT:-$D_BASE}
SLURMD_PORT=${SLURMD_PORT:-$((D_BASE + 1))}
DBD_PORT=${DBD_PORT:-$((D_BASE + 2))}
REST_PORT=${REST_PORT:-$((D_BASE + 3))}
REST_HOST=${REST_HOST:-127.0.0.1}
SLURM_FAKE_CPUS=${SLURM_FAKE_CPUS:-32}
TOKEN_USER=${TOKEN_USER:-root}
JOB_USER=${JOB_USER:-aiofarm}
TOKEN_LIFESPAN=${TOKEN_LIFESPAN:-86400}
# the controller forgets a finished job after this many seconds; accounting keeps it
MIN_JOB_AGE=${MIN_JOB_AGE:-10}
# the node's features (OpenJD host requirement attributes become constraints on them)
NODE_FEATURES=${NODE_FEATURES:-linux,$(uname -m),fx,lab}
OUT_ENV=${OUT_ENV:-/tmp/aiofarm-slurm-$CLUSTER-env.sh}
TOKEN_FILE=${TOKEN_FILE:-/tmp/aiofarm-slurm-$CLUSTER-token}
CLUSTER_NAME=aiofarm${CLUSTER//./}

PKGS="slurmctld slurmd slurmdbd slurm-client slurmrestd slurm-wlm-jwt-plugin munge mariadb-server python3 procps hostname"
REST_USER=slurmrest
STATE=/var/lib/slurm/slurmctld
SPOOL=/var/lib/slurm/slurmd
LOGDIR=/var/log/slurm
RUNDIR=/run/slurm
JWT_KEY=$STATE/jwt_hs256.key
MUNGE_PID=/run/munge/munged.pid
DB_PID=/run/mysqld/mysqld.pid
DB_SOCK=/run/mysqld/mysqld.sock
DBD_PID=$RUNDIR/slurmdbd.pid
CTLD_PID=$RUNDIR/slurmctld.pid
SLURMD_PID=$RUNDIR/slurmd.pid
REST_PID=$RUNDIR/slurmrestd.pid
MARKER=/.aiofarm-slurm-installed
BASE="http://$REST_HOST:$REST_PORT"
LOCK=/run/aiofarm-slurm-$CLUSTER.lock

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
LOG_TAG=slurm-$CLUSTER
PID_ROOT=$ROOT
. "$(dirname "$(readlink -f "$0")")/common.sh"

[ "$(id -u)" = 0 ] || die "must run as root"
case "$ROOT" in /opt/*|/var/lib/*|/srv/*) ;; *) die "AIOFARM_SLURM_CHROOT must be a dedicated directory under /opt, /var/lib or /srv (got '$ROOT')" ;; esac

BIND_DIRS="proc sys dev tmp"
for d in ${EXTRA_BINDS:-}; do
  # never over the chroot's own system (a venv of /usr/bin/python3 has its prefix in /usr)
  case "$d" in
    /|/usr|/usr/*|/bin|/bin/*|/sbin|/sbin/*|/lib*|/etc|/etc/*|/var|/var/*|/opt|/run|/run/*|/proc*|/sys*|/dev*|/tmp|/tmp/*|"$ROOT"*) continue ;;
    /*) BIND_DIRS="$BIND_DIRS ${d#/}" ;;
    *) die "EXTRA_BINDS takes absolute paths (got '$d')" ;;
  esac
done
mount_binds() {
  local d
  for d in $BIND_DIRS; do
    [ -d "/$d" ] || die "cannot bind /$d: not a directory"
    mkdir -p "$ROOT/$d"
    mountpoint -q "$ROOT/$d" && continue
    mount --rbind "/$d" "$ROOT/$d"
    mount --make-rslave "$ROOT/$d"   # unmounting later never propagates back to the host
  done
}
umount_binds() {
  # every mount under the chroot, deepest first (EXTRA_BINDS of earlier runs included)
  local m
  findmnt -rn -o TARGET | grep "^$ROOT/" | awk '{print length, $0}' | sort -rn | cut -d' ' -f2- | while read -r m; do
    mountpoint -q "$m" && { umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }
  done
  return 0
}

cancel_jobs() {
  alive "$CTLD_PID" && mountpoint -q "$ROOT/proc" || return 0
  local ids
  ids=$(in_root squeue -h -o %A 2>/dev/null | tr '\n' ' ' || true)
  [ -n "${ids// /}" ] || return 0
  in_root scancel $ids 2>/dev/null || true
  for _ in $(seq 1 50); do
    [ -z "$(in_root squeue -h -t RUNNING,COMPLETING -o %A 2>/dev/null)" ] && break
    sleep 0.2
  done
}
stop_all() {
  cancel_jobs
  stop_pidfile "$REST_PID" slurmrestd
  stop_pidfile "$SLURMD_PID" slurmd
  stop_pidfile "$CTLD_PID" slurmctld
  stop_pidfile "$DBD_PID" slurmdbd
  stop_pidfile "$DB_PID" mariadbd
  stop_pidfile "$MUNGE_PID" munged
}

start_rest() {
  # not as root/SlurmUser (-u/-g drop privileges after binding); SLURM_JWT=daemon makes it
  # pass each client's JWT on to slurmctld/slurmdbd instead of its own identity
  setsid nohup chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    SLURM_JWT=daemon /bin/sh -c "echo \$\$ >$REST_PID; exec /usr/sbin/slurmrestd -u $REST_USER -g $REST_USER \
    -a rest_auth/jwt -s openapi/slurmctld,openapi/slurmdbd $REST_HOST:$REST_PORT" \
    >>"$ROOT$LOGDIR/slurmrestd.log" 2>&1 </dev/null 9>&- &
  local code=""
  for _ in $(seq 1 150); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/openapi/v3" || true)
    case "$code" in 200|401) return 0 ;; esac   # 24.11+ wants a token even for the spec
    sleep 0.1
  done
  tail -20 "$ROOT$LOGDIR/slurmrestd.log" >&2
  die "slurmrestd not answering on $BASE (http=$code)"
}

write_env() {
  local tok jtok served=""
  tok=$(in_root scontrol token username="$TOKEN_USER" lifespan="$TOKEN_LIFESPAN" | sed -n 's/^SLURM_JWT=//p')
  jtok=$(in_root scontrol token username="$JOB_USER" lifespan="$TOKEN_LIFESPAN" | sed -n 's/^SLURM_JWT=//p')
  [ -n "$tok" ] && [ -n "$jtok" ] || die "scontrol token failed"
  for v in $(in_root sh -c "ls /usr/lib/x86_64-linux-gnu/slurm-wlm/" | grep -oE '^data_parser_v0_0_[0-9]+' | sed 's/data_parser_v//; s/_/./g; s/^/v/' | sort -t. -k3,3nr -u); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-SLURM-USER-NAME: $TOKEN_USER" -H "X-SLURM-USER-TOKEN: $tok" "$BASE/slurm/$v/diag")" = 200 ] \
      && served="$served $v"
  done
  served=${served# }
  ( umask 077
    cat >"$OUT_ENV.tmp" <<EOF
export SLURM_CLUSTER=$CLUSTER
export SLURM_VERSION=$(in_root sinfo -V | awk '{print $2}')
export SLURM_REST_URL=$BASE
export SLURM_API_VERSIONS="$served"
export SLURM_USER=$TOKEN_USER
export SLURM_JWT=$tok
export SLURM_TOKEN_FILE=$TOKEN_FILE
export SLURM_CHROOT=$ROOT
export SLURM_BIN=$ROOT/host-bin
export SLURM_ACCOUNTING=1
export SLURM_MIN_JOB_AGE=$MIN_JOB_AGE
export SLURM_NODE_FEATURES=$NODE_FEATURES
export AIOFARM_SLURM_JOB_USER=$JOB_USER
export AIOFARM_SLURM_JOB_USER_JWT=$jtok
EOF
    printf '%s\n' "$tok" >"$TOKEN_FILE.tmp"
  )
  mv "$OUT_ENV.tmp" "$OUT_ENV"
  mv "$TOKEN_FILE.tmp" "$TOKEN_FILE"
}

install_client_commands() {
  HOSTBIN="$ROOT/host-bin"
  mkdir -p "$HOSTBIN"
  cat >"$HOSTBIN/slurm-chroot" <<EOF
#!/bin/sh
# Run a Slurm client command inside the chroot $ROOT from the host, in the current
# directory when the chroot sees it (under /tmp), else in /tmp. chroot(2) needs root:
# any other user comes back through sudo (/etc/sudoers.d/aiofarm-slurm-${CLUSTER//./} allows
# this one script) and the command runs inside as that user again, so Slurm applies
# the caller's permissions (a job's owner adds steps to it, root cannot).
ROOT='$ROOT'
name=\$(basename "\$0")
if [ "\$name" = slurm-chroot ]; then name=\$1; shift; fi
if [ "\$(id -u)" != 0 ]; then exec sudo -n "\$ROOT/host-bin/slurm-chroot" "\$name" "\$@"; fi
set -- "\$name" "\$@"
who=""
if [ -n "\${SUDO_UID:-}" ] && [ "\$SUDO_UID" != 0 ]; then
  home=\$(chroot "\$ROOT" getent passwd "\$SUDO_UID" | cut -d: -f6)
  who="--userspec=\$SUDO_UID:\$SUDO_GID --groups=\$(id -G "\$SUDO_UID" | tr ' ' ',')"
  set -- env HOME="\${home:-/tmp}" USER="\$SUDO_USER" LOGNAME="\$SUDO_USER" "\$@"
fi
# SLURM_JWT in the environment would switch the clients to auth/jwt (srun needs munge)
exec env -u SLURM_JWT -u SLURM_CONF -u LD_PRELOAD -u LD_LIBRARY_PATH -u SUDO_UID -u SUDO_GID -u SUDO_USER \\
  -u SUDO_COMMAND PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \\
  chroot \$who "\$ROOT" /bin/sh -c 'cd "\$1" 2>/dev/null || cd /tmp; shift; exec "\$@"' sh "\$PWD" "\$@"
EOF
  chmod 0755 "$HOSTBIN/slurm-chroot"
  # ... through sudo for every user, this script only (it goes back to the caller's uid)
  if ! command -v sudo >/dev/null; then
    log "apt-get install sudo (host)"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq sudo >/tmp/aiofarm-slurm-host-apt.log 2>&1 \
      || { tail -20 /tmp/aiofarm-slurm-host-apt.log >&2; die "could not install sudo on the host"; }
  fi
  SUDOERS=/etc/sudoers.d/aiofarm-slurm-${CLUSTER//./}
  printf 'ALL ALL=(root) NOPASSWD: %s\n' "$HOSTBIN/slurm-chroot" >"$SUDOERS.tmp"
  chmod 0440 "$SUDOERS.tmp"
  visudo -cqf "$SUDOERS.tmp" || die "bad sudoers rule in $SUDOERS.tmp"
  mv "$SUDOERS.tmp" "$SUDOERS"
  for c in srun sbatch sattach scontrol scancel squeue sinfo sacct sacctmgr; do ln -sfn slurm-chroot "$HOSTBIN/$c"; done
}

all_up() {
  local f
  for f in "$MUNGE_PID" "$DB_PID" "$DBD_PID" "$CTLD_PID" "$SLURMD_PID" "$REST_PID"; do alive "$f" || return 1; done
  mountpoint -q "$ROOT/tmp" || return 1
  case "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/openapi/v3" || true)" in 200|401) ;; *) return 1 ;; esac
  case "$(node_state)" in idle|mixed|allocated|alloc*|mix*) return 0 ;; esac
  return 1
}

cmd=${1:-start}
case "$cmd" in
  stop)
    [ -d "$ROOT" ] || exit 0
    take_lock "$LOCK"; stop_all; umount_binds; echo "[slurm-$CLUSTER] stopped (chroot kept at $ROOT)"; exit 0 ;;
  stop-rest) stop_pidfile "$REST_PID" slurmrestd; exit 0 ;;
  start-rest) take_lock "$LOCK"; alive "$REST_PID" || start_rest; echo "slurmrestd pid $(pid_of "$REST_PID")"; exit 0 ;;
  status)
    for f in "$MUNGE_PID" "$DB_PID" "$DBD_PID" "$CTLD_PID" "$SLURMD_PID" "$REST_PID"; do
      if alive "$f"; then echo "$f: running pid $(pid_of "$f")"; else echo "$f: not running"; fi
    done
    exit 0 ;;
  purge)
    take_lock "$LOCK"; [ -d "$ROOT" ] && { stop_all; umount_binds; }
    findmnt -rn -o TARGET | grep -q "^$ROOT\(/\|$\)" && die "something is still mounted under $ROOT"
    rm -rf --one-file-system "$ROOT" "$ROOT.tmp"; rm -f "/etc/sudoers.d/aiofarm-slurm-${CLUSTER//./}"; echo "[slurm-$CLUSTER] deleted $ROOT"; exit 0 ;;
  start|restart) take_lock "$LOCK" ;;
  *) echo "usage: $0 [start|restart|stop|status|stop-rest|start-rest|purge]" >&2; exit 2 ;;
esac

if [ "$cmd" = start ] && [ -x "$ROOT/usr/sbin/slurmctld" ] && all_up; then
  mount_binds
  install_client_commands
  write_env
  log "cluster already up; refreshed $OUT_ENV"
  exit 0
fi

# ------------------------------------------------------------------ 1. the chroot
pkgs_missing() {
  local p miss=""
  for p in $PKGS; do
    in_root dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || miss="$miss $p"
  done
  echo "$miss"
}
if [ ! -f "$ROOT$MARKER" ] || [ -n "$(pkgs_missing)" ]; then
  MIRROR=${MIRROR:-$(grep -rhs -E '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
      | grep -oE 'https?://[^ ]+/debian/?' | grep -v security | head -1 || true)}
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  if ! command -v mmdebstrap >/dev/null; then
    log "apt-get install mmdebstrap (host)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq mmdebstrap >/tmp/aiofarm-slurm-host-apt.log 2>&1 || {
      apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1 || true
      apt-get -o DPkg::Lock::Timeout=600 install -y -qq mmdebstrap >/tmp/aiofarm-slurm-host-apt.log 2>&1
    } || { tail -20 /tmp/aiofarm-slurm-host-apt.log >&2; die "could not install mmdebstrap on the host"; }
  fi
  if [ -e "$ROOT" ]; then
    mountpoint -q "$ROOT/proc" && die "$ROOT is incomplete but mounted; run '$0 stop' first"
    rm -rf --one-file-system "$ROOT"
  fi
  TMP="$ROOT.tmp"
  if [ -e "$TMP" ]; then
    findmnt -rn -o TARGET | grep "^$TMP/" | sort -r | while read -r m; do umount -l "$m" || true; done
    rm -rf --one-file-system "$TMP"
  fi
  mkdir -p "$(dirname "$ROOT")"
  log "bootstrapping Debian $SUITE into $ROOT from $MIRROR"
  # one apt run; policy-rc.d blocks daemon starts; sid's Release may look expired on frozen mirrors
  mmdebstrap --mode=root --variant=apt --aptopt='Acquire::Check-Valid-Until "false"' \
    --include="${PKGS// /,}" "$SUITE" "$TMP" "$MIRROR" >"/tmp/aiofarm-slurm-$CLUSTER-bootstrap.log" 2>&1 \
    || { tail -30 "/tmp/aiofarm-slurm-$CLUSTER-bootstrap.log" >&2; die "mmdebstrap failed"; }
  chroot "$TMP" apt-get clean >/dev/null 2>&1 || true
  mv "$TMP" "$ROOT"
  echo "$SUITE slurm=$(in_root dpkg-query -W -f='${Version}' slurmctld) installed=$(date -u +%FT%TZ)" >"$ROOT$MARKER"
  log "installed: $(cat "$ROOT$MARKER")"
fi

# ------------------------------------------------------------------ 2. configuration
stop_all >/dev/null
for p in "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$REST_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "port $p is in use by a process this script did not start"
  fi
done
mount_binds

printf '127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$(hostname)" >"$ROOT/etc/hosts"
in_root id slurm >/dev/null 2>&1 || in_root useradd -r -M -d /nonexistent -s /usr/sbin/nologin slurm
in_root id "$REST_USER" >/dev/null 2>&1 || in_root useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$REST_USER"
# the job user exists on the host (its uid owns files under /tmp) and in the chroot, same uid
id "$JOB_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$JOB_USER"
if ! in_root id "$JOB_USER" >/dev/null 2>&1; then
  in_root groupadd -o -g "$(id -g "$JOB_USER")" "$(id -gn "$JOB_USER")" 2>/dev/null || true
  in_root useradd -o -M -u "$(id -u "$JOB_USER")" -g "$(id -g "$JOB_USER")" -d /tmp -s /bin/bash "$JOB_USER"
fi

in_root install -d -o slurm -g slurm -m 0755 "$STATE" "$LOGDIR" "$RUNDIR"
in_root install -d -o root -g root -m 0755 "$SPOOL" /etc/slurm
in_root install -d -o munge -g munge -m 0755 /run/munge
in_root install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
in_root install -d -o mysql -g mysql -m 0755 /run/mysqld
[ -s "$ROOT/etc/munge/munge.key" ] || in_root mungekey --create --force
in_root chown munge:munge /etc/munge/munge.key
chmod 0400 "$ROOT/etc/munge/munge.key"
[ -s "$ROOT$JWT_KEY" ] || dd if=/dev/urandom of="$ROOT$JWT_KEY" bs=32 count=1 status=none
in_root chown slurm:slurm "$JWT_KEY"
chmod 0600 "$ROOT$JWT_KEY"

ACCOUNTING="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# the comment holds aiofarm's tags and the steps of a multi-step job: keep it in history
AccountingStoreFlags=job_comment"
write_slurm_conf "$ROOT/etc/slurm/slurm.conf"
echo "CgroupPlugin=disabled" >"$ROOT/etc/slurm/cgroup.conf"
DB_PASS_FILE=$ROOT/etc/slurm/.dbpass
[ -s "$DB_PASS_FILE" ] || { head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DB_PASS_FILE"; chmod 0600 "$DB_PASS_FILE"; }
DB_PASS=$(cat "$DB_PASS_FILE")
cat >"$ROOT/etc/slurm/slurmdbd.conf" <<EOF
# generated by aiofarm scripts/slurm/start-slurm-modern.sh
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$JWT_KEY
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=slurm
PidFile=$DBD_PID
LogFile=$LOGDIR/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$DB_PASS
EOF
chmod 0644 "$ROOT/etc/slurm/cgroup.conf"
in_root chown slurm:slurm /etc/slurm/slurmdbd.conf
chmod 0600 "$ROOT/etc/slurm/slurmdbd.conf"

install_client_commands

# ------------------------------------------------------------------ 3. daemons
start_munge

if [ ! -d "$ROOT/var/lib/mysql/mysql" ]; then
  in_root mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/tmp/aiofarm-slurm-$CLUSTER-db.log 2>&1 \
    || { cat /tmp/aiofarm-slurm-$CLUSTER-db.log >&2; die "mariadb-install-db failed"; }
fi
# small: a test database on a 2-core machine
setsid nohup chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
  /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --socket=$DB_SOCK --pid-file=$DB_PID \
  --skip-networking --innodb-buffer-pool-size=64M --performance-schema=OFF --innodb-log-file-size=16M \
  --log-error=/var/log/mysql-error.log >/dev/null 2>&1 </dev/null 9>&- &
# the client library of some Debian releases looks in /run/mariadbd instead
in_root install -d -o mysql -g mysql -m 0755 /run/mariadbd
ln -sfn $DB_SOCK "$ROOT/run/mariadbd/mysqld.sock"
for _ in $(seq 1 200); do in_root mariadb-admin --socket=$DB_SOCK ping >/dev/null 2>&1 && break; sleep 0.1; done
in_root mariadb-admin --socket=$DB_SOCK ping >/dev/null 2>&1 || fail_log /var/log/mysql-error.log "mariadbd did not start"
in_root mariadb --socket=$DB_SOCK -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
  ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" || die "database setup failed"
log "mariadbd pid $(pid_of $DB_PID)"

in_root /usr/sbin/slurmdbd 9>&- || fail_log $LOGDIR/slurmdbd.log "slurmdbd failed to start"
for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$DBD_PORT") 2>/dev/null && break; sleep 0.1; done
alive "$DBD_PID" || fail_log $LOGDIR/slurmdbd.log "slurmdbd died"
in_root sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null 2>&1 || true
in_root sacctmgr -i add account aiofarm Cluster="$CLUSTER_NAME" >/dev/null 2>&1 || true
in_root sacctmgr -i add user root,"$JOB_USER" Account=aiofarm Cluster="$CLUSTER_NAME" >/dev/null 2>&1 || true
log "slurmdbd pid $(pid_of $DBD_PID) on :$DBD_PORT"

# -c: forget the previous run's jobs (job ids keep counting from the saved state)
start_controller -c

start_rest
write_env
log "Slurm $(in_root sinfo -V | awk '{print $2}') up: REST $BASE ($(. "$OUT_ENV"; echo "$SLURM_API_VERSIONS")), env $OUT_ENV"
