#!/usr/bin/env bash
# `make bench-imaging`: installs curl, zstd and util-linux when root and missing, then runs
# bench/imaging/main.ts, which starts its own controller and agent and creates its own loop device,
# and stops and removes them by PID and by name, also on failure or Ctrl-C. Needs root (losetup).
# Progress on stderr; stdout ends with one line of figures, the ratios against the baseline first.
#
#   BENCH_IMAGE_BYTES=2147483648  size of the image
#   BENCH_ROUNDS=5                (baseline, Ingot) pairs per format, order alternating; medians compared
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"
export PATH="$REPO_ROOT/node_modules/.bin:$PATH"

log() { printf 'bench-imaging: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# shellcheck source=test/support/debian-packages.sh
source "$REPO_ROOT/test/support/debian-packages.sh"

((EUID == 0)) || die 'needs root: it creates a loop device'

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

ensure_debs curl zstd util-linux
log "load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
# In the background and waited for, so that a signal runs the traps at once (see run-tests.sh).
node bench/imaging/main.ts </dev/null &
BENCH_PID=$!
rc=0
wait "$BENCH_PID" || rc=$?
BENCH_PID=''
exit "$rc"
