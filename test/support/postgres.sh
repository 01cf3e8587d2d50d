# Sourced by test/support/run-tests.sh and bench/*/run.sh: a throwaway PostgreSQL cluster.
#
#   start_pg "$TMP_ROOT"   # initdb + start under $TMP_ROOT/pg on a free port; sets PG_DIR, PG_BIN, PG_PORT, PG_URL
#   stop_pg                # in the caller's EXIT trap: stops it (pg_ctl, else the postmaster by PID)
#
# PG_URL is postgres://postgres@127.0.0.1:PORT/postgres: superuser, trust auth, fsync off. The
# caller defines log() and die(), runs under `set -euo pipefail`, installs the `postgresql` Debian
# package first (debian-packages.sh) and removes $TMP_ROOT itself. When root, the tools run as the
# `postgres` user; $TMP_ROOT is made traversable (0711) for it.

PG_DIR=''
PG_BIN=''
PG_PORT=''
PG_URL=''

# A live process (a zombie no longer counts: it is gone, only not yet reaped).
alive() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n $stat && $stat != Z* ]]
}

as_pg() {
  # PostgreSQL refuses to run as root: run its tools as the `postgres` user then. From inside the
  # cluster's directory, so that the tools never touch a cwd they may not read.
  if ((EUID == 0)); then
    (cd "$PG_DIR" && runuser -u postgres -- "$@")
  else
    (cd "$PG_DIR" && "$@")
  fi
}

stop_pg() {
  [[ -n $PG_DIR && -f $PG_DIR/data/postmaster.pid ]] || return 0
  local pid
  pid=$(head -n1 "$PG_DIR/data/postmaster.pid" 2>/dev/null || true)
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -s -m fast -w -t 30 stop >/dev/null 2>&1 && return 0
  # pg_ctl could not stop it: end the postmaster we started (from our own data directory) by PID.
  if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid"; then
    log "pg_ctl stop failed; killing postmaster $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pid" || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

free_port() {
  node -e 'const s = require("node:net").createServer();
    s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

start_pg() {
  local root=$1
  PG_BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)
  if [[ -z $PG_BIN ]] && command -v initdb >/dev/null; then PG_BIN=$(dirname "$(command -v initdb)"); fi
  [[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] || die 'no PostgreSQL server binaries (initdb, pg_ctl) found'

  chmod 711 "$root" # let the postgres user reach its own directory below
  PG_DIR=$root/pg
  mkdir -m 700 "$PG_DIR"
  if ((EUID == 0)); then chown postgres:postgres "$PG_DIR"; fi

  if ! as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
    >"$PG_DIR/initdb.log" 2>&1; then
    cat "$PG_DIR/initdb.log" >&2
    die 'initdb failed'
  fi
  as_pg tee -a "$PG_DIR/data/postgresql.conf" >/dev/null <<CONF

# --- ingot throwaway cluster (test/support/postgres.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
CONF
  as_pg tee "$PG_DIR/data/pg_hba.conf" >/dev/null <<'CONF'
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  trust
CONF

  # The port comes from the kernel; if another process takes it before the postmaster binds it, retry.
  local attempt port
  PG_PORT=''
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    [[ $port =~ ^[0-9]+$ ]] || die "could not pick a free port (got '$port')"
    rm -f "$PG_DIR/postgres.log" # pg_ctl creates it, owned by the postgres user
    if as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -o "-p $port" -s -w -t 60 start \
      >"$root/pg_ctl.log" 2>&1; then
      PG_PORT=$port
      break
    fi
    if grep -qiE 'could not bind|could not create any TCP/IP sockets|already in use' "$PG_DIR/postgres.log"; then
      log "port $port was taken meanwhile (attempt $attempt); retrying"
      stop_pg
      continue
    fi
    cat "$root/pg_ctl.log" "$PG_DIR/postgres.log" >&2 || true
    die 'PostgreSQL did not start'
  done
  [[ -n $PG_PORT ]] || die 'PostgreSQL did not start: no free port after 5 attempts'

  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT" \
    "(pid $(head -n1 "$PG_DIR/data/postmaster.pid"), data $PG_DIR/data)"
}
