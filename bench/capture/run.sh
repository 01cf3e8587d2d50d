#!/usr/bin/env bash
# `make bench-capture`: installs netcat-openbsd, gdisk, util-linux and iproute2 when root and missing,
# then runs bench/capture/main.ts, which starts its own controller and agent and creates its own loop
# devices, and stops and removes them by PID and by name, also on failure or Ctrl-C. Needs root.
# Progress on stderr; stdout ends with one line of figures, the ratio against dd|nc first.
#
#   BENCH_DISK_BYTES=2147483648  size of each disk
#   BENCH_ROUNDS=3               (dd|nc, Ingot) pairs on the full disk, order alternating; medians compared
exec "$(dirname "${BASH_SOURCE[0]}")/../support/node-bench.sh" capture bench/capture/main.ts \
  netcat-openbsd gdisk util-linux iproute2
