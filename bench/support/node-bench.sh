#!/usr/bin/env bash
# Runs a benchmark written in TypeScript that needs root (loop devices): installs the Debian packages
# it names when missing, then runs its main.ts in the background and waits for it, so that a signal
# runs the traps at once (see test/support/run-tests.sh); the benchmark stops what it started itself.
#
#   bench/support/node-bench.sh NAME MAIN.ts [DEBIAN-PACKAGE…]
set -euo pipefail

NAME=$1
MAIN=$2
shift 2
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"
export PATH="$REPO_ROOT/node_modules/.bin:$PATH"

log() { printf 'bench-%s: %s\n' "$NAME" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# shellcheck source=test/support/debian-packages.sh
source "$REPO_ROOT/test/support/debian-packages.sh"

((EUID == 0)) || die 'needs root: it creates loop devices'

BENCH_PID=''
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [[ -n $BENCH_PID ]] && kill -0 "$BENCH_PID" 2>/dev/null; then
    kill -TERM "$BENCH_PID" 2>/dev/null || true
    wait "$BENCH_PID" 2>/dev/null || true
  fi
  debs_cleanup
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

(($# == 0)) || ensure_debs "$@"
log "load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
node "$MAIN" </dev/null &
BENCH_PID=$!
rc=0
wait "$BENCH_PID" || rc=$?
BENCH_PID=''
exit "$rc"
