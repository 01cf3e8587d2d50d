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
  openssh-server   # sshd (and ssh-keygen): the Linux-bridge driver's SSH transport
  util-linux       # losetup, blockdev: the agent suites' loop devices
  fdisk            # sfdisk: MBR partition tables on the capture suite's loop devices
  gdisk            # sgdisk: GPT partition tables on the capture suite's loop devices
  netcat-openbsd   # nc: the stock receiver and sender the capture suite streams with
  zstd             # bench-imaging's baseline (zstd -dc); zstd images are made with node:zlib
  curl             # bench-imaging's baseline (curl | dd)
  qemu-system-x86  # the bootstrap image booted under QEMU (TCG): test/integration/bootstrap.test.ts
  ipxe-qemu        # QEMU's NIC option ROMs (virtio-net-pci needs efi-virtio.rom)
  syslinux         # syslinux (mtools installer): the VM test image's boot loader (tools/lab/test-image.sh)
  syslinux-common  # mbr.bin and ldlinux for it
  mtools           # mcopy: files into the test image's FAT without mounting it
  dosfstools       # mkfs.fat
)

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"
export PATH="$REPO_ROOT/node_modules/.bin:$PATH"

log() { printf 'run-tests: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# shellcheck source=test/support/debian-packages.sh
source "$REPO_ROOT/test/support/debian-packages.sh"
# shellcheck source=test/support/postgres.sh
source "$REPO_ROOT/test/support/postgres.sh"

TMP_ROOT=''
VITEST_PID=''
SUMMARY=''

# Network namespaces a killed test process left behind (tools/lab/netns-lab.ts lists each one it
# creates under $INGOT_NETNS_REGISTRY): the processes still in them are ended by PID, then they go.
remove_netns() {
  [[ -n $TMP_ROOT && -d $TMP_ROOT/netns ]] || return 0
  local ns pid
  while read -r ns; do
    [[ -n $ns && -e /run/netns/$ns ]] || continue
    log "removing network namespace $ns left by a test"
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done < <(cat "$TMP_ROOT"/netns/* 2>/dev/null)
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
  remove_netns
  # Loop devices of virtual labs a killed test left attached (tools/lab/virtual-lab.ts lists them).
  if [[ -n $TMP_ROOT ]]; then "$REPO_ROOT/test/support/sweep-loop-devices.sh" "$TMP_ROOT/loop"; fi
  debs_cleanup
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

# --- 1. Debian packages (test/support/debian-packages.sh) ---------------------------------------

ensure_debs "${TEST_DEBS[@]}"

# --- 2. Throwaway PostgreSQL (test/support/postgres.sh) -------------------------------------------

TMP_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/ingot-test.XXXXXX")
start_pg "$TMP_ROOT"
export INGOT_TEST_PG_URL=$PG_URL
export INGOT_NETNS_REGISTRY=$TMP_ROOT/netns

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
