#!/usr/bin/env bash
# `make bench-imaging`: installs curl, zstd and util-linux when root and missing, then runs
# bench/imaging/main.ts, which starts its own controller and agent and creates its own loop device,
# and stops and removes them by PID and by name, also on failure or Ctrl-C. Needs root (losetup).
# Progress on stderr; stdout ends with one line of figures, the ratios against the baseline first.
#
#   BENCH_IMAGE_BYTES=2147483648  size of the image
#   BENCH_ROUNDS=5                (baseline, Ingot) pairs per format, order alternating; medians compared
exec "$(dirname "${BASH_SOURCE[0]}")/../support/node-bench.sh" --root 'loop devices' imaging bench/imaging/main.ts curl zstd util-linux
