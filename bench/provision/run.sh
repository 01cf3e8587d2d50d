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
postgres=(--postgres)
if [[ " $* " == *' pglite '* || " $* " == *'=pglite '* ]]; then postgres=(); fi
exec "$(dirname "${BASH_SOURCE[0]}")/../support/node-bench.sh" --root 'network namespaces, bridges and loop devices' \
  --lab "${postgres[@]}" provision bench/provision/provision-bench.ts -- "$@"
