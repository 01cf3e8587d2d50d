#!/usr/bin/env bash
# `make bench-capture`: installs netcat-openbsd, gdisk, util-linux and iproute2 when root and missing,
# then runs bench/capture/main.ts, which starts its own controller and agents and creates its own loop
# devices and node namespace (a veth pair shaped to 1 Gbit/s with tc tbf, bench/capture/link.ts), and
# stops and removes them by PID and by name, also on failure or Ctrl-C. Needs root.
# Progress on stderr; stdout ends with one line of figures, the ratio against dd|nc over the link first.
#
#   BENCH_DISK_BYTES=2147483648  size of each disk
#   BENCH_ROUNDS=3               rounds on the full disk, per place (link, loopback), order rotating; medians compared
exec "$(dirname "${BASH_SOURCE[0]}")/../support/node-bench.sh" --root 'loop devices and a network namespace' capture bench/capture/main.ts \
  netcat-openbsd gdisk util-linux iproute2
