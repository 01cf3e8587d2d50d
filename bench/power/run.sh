#!/usr/bin/env bash
# `make bench-power`: installs ipmi_sim, ipmitool and FreeIPMI when root and missing, then runs
# bench/power/main.ts, which starts its simulated BMCs itself and stops them by PID, also on failure
# or Ctrl-C. Progress on stderr; stdout ends with one line of figures.
#
#   BENCH_POWER_SAMPLES=30  latency samples per driver and operation
#   BENCH_POWER_WAVE=100    nodes in the power-on wave
exec "$(dirname "${BASH_SOURCE[0]}")/../support/node-bench.sh" power bench/power/main.ts \
  openipmi ipmitool freeipmi-tools
