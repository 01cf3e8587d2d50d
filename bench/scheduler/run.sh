#!/usr/bin/env bash
# `make bench-scheduler`: installs PostgreSQL when root and missing, starts a throwaway cluster
# (test/support/postgres.sh), runs bench/scheduler/main.ts against it and removes everything it
# started, also on failure or Ctrl-C. Progress on stderr; stdout ends with one line of figures.
exec "$(dirname "${BASH_SOURCE[0]}")/../support/node-bench.sh" --postgres scheduler bench/scheduler/main.ts
