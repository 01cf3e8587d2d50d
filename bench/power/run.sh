#!/usr/bin/env bash
# `make bench-power`: installs ipmi_sim, ipmitool and FreeIPMI when root and missing, then runs
# bench/power/main.ts, which starts its simulated BMCs itself and stops them by PID, also on failure
# or Ctrl-C. Progress on stderr; stdout ends with one line of figures.
#
#   BENCH_POWER_SAMPLES=30  latency samples per driver and operation
#   BENCH_POWER_WAVE=100    nodes in the power-on wave
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"
export PATH="$REPO_ROOT/node_modules/.bin:$PATH"

DEBS=(openipmi ipmitool freeipmi-tools)
missing=()
for p in "${DEBS[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) == 'install ok installed' ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  if ((EUID != 0)); then
    echo "bench-power: missing Debian packages: ${missing[*]}; install them as root" >&2
    exit 1
  fi
  echo "bench-power: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update >&2
  DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 install --no-install-recommends "${missing[@]}" >&2
fi

BENCH_PID=''
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [[ -n $BENCH_PID ]] && kill -0 "$BENCH_PID" 2>/dev/null; then
    kill -TERM "$BENCH_PID" 2>/dev/null || true
    wait "$BENCH_PID" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

echo "bench-power: load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >&2
node bench/power/main.ts </dev/null &
BENCH_PID=$!
rc=0
wait "$BENCH_PID" || rc=$?
BENCH_PID=''
exit "$rc"
