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
exec "$(dirname "${BASH_SOURCE[0]}")/../support/node-bench.sh" \
  --root 'it creates network namespaces and runs dnsmasq in one' network bench/network/main.ts dnsmasq iproute2
