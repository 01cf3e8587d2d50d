#!/usr/bin/env bash
# `make bench-network`: installs dnsmasq and iproute2 when root and missing, then runs
# bench/network/main.ts, which starts its test switch, namespaces and dnsmasq itself and removes
# them (by PID and by name) also on failure. Progress on stderr; stdout ends with one line of figures.
#
#   BENCH_NETWORK_PORTS=50        ports in the VLAN flip
#   BENCH_NETWORK_ROUNDS=5        flips measured (median)
#   BENCH_NETWORK_COMMIT_MS=100   commit time of the slow test switch
#   BENCH_NETWORK_HOSTS=1000      dnsmasq host entries
#   BENCH_NETWORK_SAMPLES=20      add/remove samples
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"
export PATH="$REPO_ROOT/node_modules/.bin:$PATH"

log() { printf 'bench-network: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# shellcheck source=test/support/debian-packages.sh
source "$REPO_ROOT/test/support/debian-packages.sh"

((EUID == 0)) || die 'needs root: it creates network namespaces and runs dnsmasq in one'

BENCH_PID=''
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM HUP
  if [[ -n $BENCH_PID ]] && kill -0 "$BENCH_PID" 2>/dev/null; then
    kill -TERM "$BENCH_PID" 2>/dev/null
    wait "$BENCH_PID" 2>/dev/null
  fi
  debs_cleanup
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

ensure_debs dnsmasq iproute2
node bench/network/main.ts </dev/null &
BENCH_PID=$!
rc=0
wait "$BENCH_PID" || rc=$?
BENCH_PID=''
exit "$rc"
