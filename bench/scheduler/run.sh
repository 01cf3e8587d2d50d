#!/usr/bin/env bash
# `make bench-scheduler`: installs PostgreSQL when root and missing, starts a throwaway cluster
# (test/support/postgres.sh), runs bench/scheduler/main.ts against it and removes everything it
# started, also on failure or Ctrl-C. Progress on stderr; stdout ends with one line of figures.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"
export PATH="$REPO_ROOT/node_modules/.bin:$PATH"

log() { printf 'bench-scheduler: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# shellcheck source=test/support/debian-packages.sh
source "$REPO_ROOT/test/support/debian-packages.sh"
# shellcheck source=test/support/postgres.sh
source "$REPO_ROOT/test/support/postgres.sh"

TMP_ROOT=''
BENCH_PID=''

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM HUP
  if [[ -n $BENCH_PID ]] && alive "$BENCH_PID"; then
    log "stopping the benchmark (pid $BENCH_PID)"
    kill -TERM "$BENCH_PID" 2>/dev/null
    for _ in $(seq 100); do alive "$BENCH_PID" || break; sleep 0.1; done
    kill -KILL "$BENCH_PID" 2>/dev/null
    wait "$BENCH_PID" 2>/dev/null
  fi
  stop_pg
  debs_cleanup
  if [[ -n $TMP_ROOT ]]; then rm -rf "$TMP_ROOT"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

ensure_debs postgresql procps
TMP_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/ingot-bench.XXXXXX")
start_pg "$TMP_ROOT"

# In the background and waited for, so that a signal runs the traps at once (see run-tests.sh).
INGOT_BENCH_PG_URL=$PG_URL node bench/scheduler/main.ts </dev/null &
BENCH_PID=$!
BENCH_RC=0
wait "$BENCH_PID" || BENCH_RC=$?
BENCH_PID=''
exit "$BENCH_RC"
