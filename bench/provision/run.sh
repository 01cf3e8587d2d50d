#!/usr/bin/env bash
# `make bench-provision`: installs what the virtual lab needs when root and missing, starts a
# throwaway PostgreSQL cluster unless `--backend pglite` is asked for (test/support/postgres.sh), then
# runs bench/provision/provision-bench.ts, which starts and stops its labs and controllers itself, by
# PID and by name, also on failure or Ctrl-C. Should it be killed outright, the namespaces and loop
# devices it left are removed here from the registries tools/lab keeps. Needs root.
# Progress on stderr; stdout: a table per size, then one line of figures, the ratio first.
#
#   bench/provision/run.sh [--sizes 1,10,50] [--image-mib 16] [--backend postgres|pglite]
#   make bench-provision BENCH_ARGS='--sizes 1,10'
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"
export PATH="$REPO_ROOT/node_modules/.bin:$PATH"

log() { printf 'bench-provision: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# shellcheck source=test/support/debian-packages.sh
source "$REPO_ROOT/test/support/debian-packages.sh"
# shellcheck source=test/support/postgres.sh
source "$REPO_ROOT/test/support/postgres.sh"

((EUID == 0)) || die 'needs root: network namespaces, bridges and loop devices'

TMP_ROOT=''
BENCH_PID=''

# Namespaces a killed benchmark left (tools/lab/netns-lab.ts lists each under $INGOT_NETNS_REGISTRY):
# the processes still in them are ended by PID, then they go; then the loop devices it listed.
remove_leftovers() {
  [[ -n $TMP_ROOT ]] || return 0
  local ns pid
  if [[ -d $TMP_ROOT/netns ]]; then
    while read -r ns; do
      [[ -n $ns && -e /run/netns/$ns ]] || continue
      log "removing network namespace $ns left by the benchmark"
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
      ip netns del "$ns" 2>/dev/null
    done < <(cat "$TMP_ROOT"/netns/* 2>/dev/null)
  fi
  if [[ -x $REPO_ROOT/test/support/sweep-loop-devices.sh ]]; then
    "$REPO_ROOT/test/support/sweep-loop-devices.sh" "$TMP_ROOT/loop"
  fi
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM HUP
  if [[ -n $BENCH_PID ]] && alive "$BENCH_PID"; then
    log "stopping the benchmark (pid $BENCH_PID)"
    kill -TERM "$BENCH_PID" 2>/dev/null
    for _ in $(seq 300); do alive "$BENCH_PID" || break; sleep 0.1; done
    kill -KILL "$BENCH_PID" 2>/dev/null
    wait "$BENCH_PID" 2>/dev/null
  fi
  remove_leftovers
  stop_pg
  debs_cleanup
  if [[ -n $TMP_ROOT ]]; then rm -rf "$TMP_ROOT"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

ensure_debs "${LAB_DEBS[@]}"
TMP_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/ingot-bench.XXXXXX")
export INGOT_NETNS_REGISTRY=$TMP_ROOT/netns
export INGOT_LOOP_REGISTRY=$TMP_ROOT/loop
if [[ " $* " != *' pglite '* && " $* " != *'=pglite '* ]]; then
  ensure_debs postgresql
  start_pg "$TMP_ROOT"
  export INGOT_TEST_PG_URL=$PG_URL
fi

log "load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
# In the background and waited for, so that a signal runs the traps at once (see run-tests.sh).
node bench/provision/provision-bench.ts "$@" </dev/null &
BENCH_PID=$!
BENCH_RC=0
wait "$BENCH_PID" || BENCH_RC=$?
BENCH_PID=''
exit "$BENCH_RC"
