#!/usr/bin/env bash
# Runs the test suite (`make test`): installs the Debian packages it needs (when root), starts a
# throwaway PostgreSQL cluster, runs `vitest run "$@"` and stops/removes everything it started, also
# on failure or Ctrl-C.
#
#   test/support/run-tests.sh                      # whole suite
#   test/support/run-tests.sh test/unit/foo.test.ts  # extra arguments go to `vitest run`
#
# Exported to the tests:
#   INGOT_TEST_PG_URL  postgres://postgres@127.0.0.1:PORT/postgres — superuser, trust auth; tests
#                      create (and drop) their own databases in it.
#
# The last line printed is always `N passed, N failed[, N skipped]` (CI reads it; it does not read
# vitest's own summary). If INGOT_TEST_SUMMARY_FILE is set, that line is also written there.
# The exit code is vitest's (or non-zero if the harness itself failed).
set -euo pipefail

# Debian packages the suite needs: add more here (ipmitool, openipmi, dnsmasq, ...) as tests need them.
# Installed with apt-get when root and missing; as another user a missing one is an error.
TEST_DEBS=(
  postgresql       # initdb, pg_ctl, postgres under /usr/lib/postgresql/*/bin
  python3-protobuf
  procps           # ps, pgrep, pkill
  iproute2         # ip, ss
  openipmi         # ipmi_sim: the simulated BMCs of tools/lab
  ipmitool         # the ipmitool power driver
  freeipmi-tools   # the freeipmi power driver (ipmipower, ipmi-chassis-config)
  dnsmasq          # netboot: DHCP host entries, TFTP (the netboot suites run it in namespaces)
  busybox-static   # udhcpc as a node's DHCP client, ping across the lab's bridges
  tftp-hpa         # tftp: fetching boot files the way a PXE ROM does
)

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"
export PATH="$REPO_ROOT/node_modules/.bin:$PATH"

log() { printf 'run-tests: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

TMP_ROOT=''
PG_DIR=''
PG_BIN=''
POLICY_RC_CREATED=''
VITEST_PID=''
SUMMARY=''

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

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM HUP
  if [[ -n $VITEST_PID ]] && alive "$VITEST_PID"; then
    log "stopping vitest (pid $VITEST_PID)"
    kill -TERM "$VITEST_PID" 2>/dev/null
    for _ in $(seq 100); do alive "$VITEST_PID" || break; sleep 0.1; done
    kill -KILL "$VITEST_PID" 2>/dev/null
    wait "$VITEST_PID" 2>/dev/null
  fi
  stop_pg
  if [[ -n $POLICY_RC_CREATED ]]; then rm -f /usr/sbin/policy-rc.d; fi
  if [[ -n $TMP_ROOT ]]; then rm -rf "$TMP_ROOT"; fi
  if [[ -z $SUMMARY ]]; then
    # The harness failed (or was interrupted) before vitest reported anything.
    SUMMARY='0 passed, 1 failed'
    ((rc != 0)) || rc=1
  fi
  if [[ -n ${INGOT_TEST_SUMMARY_FILE:-} ]]; then printf '%s\n' "$SUMMARY" >"$INGOT_TEST_SUMMARY_FILE"; fi
  printf '%s\n' "$SUMMARY"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- 1. Debian packages ------------------------------------------------------------------------

missing_debs() {
  local p
  for p in "${TEST_DEBS[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) == 'install ok installed' ]] || printf '%s\n' "$p"
  done
}

ensure_debs() {
  command -v dpkg-query >/dev/null || die "not a Debian system (no dpkg-query): install by hand: ${TEST_DEBS[*]}"
  local missing
  mapfile -t missing < <(missing_debs)
  ((${#missing[@]} == 0)) && return 0
  ((EUID == 0)) || die "missing Debian packages: ${missing[*]}; install them as root:" \
    "apt-get install --no-install-recommends ${missing[*]} (or run the tests as root)"

  # One install at a time when several runs start together; another run may have done it meanwhile.
  exec 9>/var/lock/ingot-test-apt.lock
  flock -w 1200 9 || die 'timed out waiting for another test run to install packages'
  mapfile -t missing < <(missing_debs)
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    # Packages like postgresql and dnsmasq start their system service on install; the suite starts
    # its own instances instead, so forbid that (Debian's policy-rc.d mechanism) while installing.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      POLICY_RC_CREATED=1
      printf '#!/bin/sh\n# ingot run-tests.sh: no service starts during package installs\nexit 101\n' \
        >/usr/sbin/policy-rc.d
      chmod 755 /usr/sbin/policy-rc.d
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get -q -o DPkg::Lock::Timeout=600 update
    apt-get -q -y -o DPkg::Lock::Timeout=600 install --no-install-recommends "${missing[@]}"
    if [[ -n $POLICY_RC_CREATED ]]; then
      rm -f /usr/sbin/policy-rc.d
      POLICY_RC_CREATED=''
    fi
    mapfile -t missing < <(missing_debs)
    ((${#missing[@]} == 0)) || die "still missing after apt-get install: ${missing[*]}"
  fi
  exec 9>&-
}

ensure_debs

# --- 2. Throwaway PostgreSQL ----------------------------------------------------------------------

PG_BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)
if [[ -z $PG_BIN ]] && command -v initdb >/dev/null; then PG_BIN=$(dirname "$(command -v initdb)"); fi
[[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] || die 'no PostgreSQL server binaries (initdb, pg_ctl) found'

free_port() {
  node -e 'const s = require("node:net").createServer();
    s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

TMP_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/ingot-test.XXXXXX")
chmod 711 "$TMP_ROOT" # let the postgres user reach its own directory below
PG_DIR=$TMP_ROOT/pg
mkdir -m 700 "$PG_DIR"
if ((EUID == 0)); then chown postgres:postgres "$PG_DIR"; fi

if ! as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
  >"$PG_DIR/initdb.log" 2>&1; then
  cat "$PG_DIR/initdb.log" >&2
  die 'initdb failed'
fi
as_pg tee -a "$PG_DIR/data/postgresql.conf" >/dev/null <<EOF

# --- ingot test cluster (test/support/run-tests.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
as_pg tee "$PG_DIR/data/pg_hba.conf" >/dev/null <<'EOF'
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  trust
EOF

# The port comes from the kernel; if another process takes it before the postmaster binds it, retry.
PG_PORT=''
for attempt in 1 2 3 4 5; do
  port=$(free_port)
  [[ $port =~ ^[0-9]+$ ]] || die "could not pick a free port (got '$port')"
  rm -f "$PG_DIR/postgres.log" # pg_ctl creates it, owned by the postgres user
  if as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -o "-p $port" -s -w -t 60 start \
    >"$TMP_ROOT/pg_ctl.log" 2>&1; then
    PG_PORT=$port
    break
  fi
  if grep -qiE 'could not bind|could not create any TCP/IP sockets|already in use' "$PG_DIR/postgres.log"; then
    log "port $port was taken meanwhile (attempt $attempt); retrying"
    stop_pg
    continue
  fi
  cat "$TMP_ROOT/pg_ctl.log" "$PG_DIR/postgres.log" >&2 || true
  die 'PostgreSQL did not start'
done
[[ -n $PG_PORT ]] || die 'PostgreSQL did not start: no free port after 5 attempts'

export INGOT_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT" \
  "(pid $(head -n1 "$PG_DIR/data/postmaster.pid"), data $PG_DIR/data)"

# --- 3. vitest --------------------------------------------------------------------------------------

RESULTS=$TMP_ROOT/vitest-results.json
# In the background and waited for, so that a signal to this script runs its traps at once (bash
# defers traps until a foreground child exits); cleanup() then stops vitest by its PID.
vitest run --reporter=default --reporter=json --outputFile.json="$RESULTS" "$@" </dev/null &
VITEST_PID=$!
VITEST_RC=0
wait "$VITEST_PID" || VITEST_RC=$?
VITEST_PID=''

if [[ -s $RESULTS ]]; then
  SUMMARY=$(node -e '
    const r = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
    const rc = Number(process.argv[2]);
    const passed = r.numPassedTests ?? 0;
    let failed = r.numFailedTests ?? 0;
    // A file that failed to load or whose hooks failed has no failed test of its own: count it.
    for (const f of r.testResults ?? []) {
      if (f.status === "failed" && !(f.assertionResults ?? []).some((a) => a.status === "failed")) failed++;
    }
    // vitest failed without a failing test (unhandled error, no test files, ...): count that too.
    if (rc !== 0 && failed === 0) failed = 1;
    const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
  ' "$RESULTS" "$VITEST_RC") || SUMMARY=''
fi
if [[ -z $SUMMARY ]]; then
  log "vitest (exit code $VITEST_RC) wrote no results"
  SUMMARY='0 passed, 1 failed'
  ((VITEST_RC != 0)) || VITEST_RC=1
fi
exit "$VITEST_RC"
