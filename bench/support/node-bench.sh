#!/usr/bin/env bash
# Runs one benchmark written in TypeScript, as every `make bench-*` does: installs the Debian packages
# it names when missing (as root; otherwise a missing one is an error), starts what it asks for, runs
# its main.ts in the background and waits for it, so that a signal runs the traps at once (see
# test/support/run-tests.sh), and removes everything it started, also on failure or Ctrl-C.
#
#   bench/support/node-bench.sh [OPTIONS] NAME MAIN.ts [DEBIAN-PACKAGE…] [-- MAIN-ARGS…]
#
#   --root WHY    refuse to run unless root (WHY says what needs it)
#   --postgres    a throwaway PostgreSQL cluster (test/support/postgres.sh), its URL exported as
#                 INGOT_BENCH_PG_URL and INGOT_TEST_PG_URL
#   --lab         a virtual lab's packages and registries: namespaces and loop devices a killed
#                 benchmark left (tools/lab lists them) are removed afterwards
set -euo pipefail

ROOT_WHY=''
POSTGRES=''
LAB=''
while [[ ${1:-} == --* ]]; do
  case $1 in
  --root) ROOT_WHY=$2 && shift 2 ;;
  --postgres) POSTGRES=1 && shift ;;
  --lab) LAB=1 && shift ;;
  *) echo "node-bench.sh: unknown option $1" >&2 && exit 2 ;;
  esac
done
NAME=$1
MAIN=$2
shift 2
DEBS=()
while (($#)) && [[ $1 != -- ]]; do DEBS+=("$1") && shift; done
(($#)) && shift # the `--`: what follows goes to MAIN

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
# shellcheck source=test/support/postgres.sh
source "$REPO_ROOT/test/support/postgres.sh"

[[ -z $ROOT_WHY ]] || ((EUID == 0)) || die "needs root: $ROOT_WHY"

TMP_ROOT=''
BENCH_PID=''

# Namespaces a killed benchmark left (tools/lab/netns-lab.ts lists each under $INGOT_NETNS_REGISTRY):
# the processes still in them are ended by PID, then they go; then the loop devices it listed.
remove_lab_leftovers() {
  local ns pid
  if [[ -d $TMP_ROOT/netns ]]; then
    while read -r ns; do
      [[ -n $ns && -e /run/netns/$ns ]] || continue
      log "removing network namespace $ns left by the benchmark"
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
      ip netns del "$ns" 2>/dev/null
    done < <(cat "$TMP_ROOT"/netns/* 2>/dev/null)
  fi
  "$REPO_ROOT/test/support/sweep-loop-devices.sh" "$TMP_ROOT/loop"
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
  if [[ -n $TMP_ROOT ]]; then
    [[ -z $LAB ]] || remove_lab_leftovers
    stop_pg
    rm -rf "$TMP_ROOT"
  fi
  debs_cleanup
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

DEBS+=(procps) # ps: alive()
[[ -z $LAB ]] || DEBS+=("${LAB_DEBS[@]}")
[[ -z $POSTGRES ]] || DEBS+=(postgresql)
((${#DEBS[@]} == 0)) || ensure_debs "${DEBS[@]}"
TMP_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/ingot-bench.XXXXXX")
if [[ -n $LAB ]]; then
  export INGOT_NETNS_REGISTRY=$TMP_ROOT/netns
  export INGOT_LOOP_REGISTRY=$TMP_ROOT/loop
fi
if [[ -n $POSTGRES ]]; then
  start_pg "$TMP_ROOT"
  export INGOT_BENCH_PG_URL=$PG_URL INGOT_TEST_PG_URL=$PG_URL
fi

log "load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
node "$MAIN" "$@" </dev/null &
BENCH_PID=$!
rc=0
wait "$BENCH_PID" || rc=$?
BENCH_PID=''
exit "$rc"
