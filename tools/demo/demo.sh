#!/usr/bin/env bash
# `make demo`: starts a controller on the embedded database (PGlite) in a temporary data directory,
# registers a sample inventory with the seed's bmctl commands, shows it, and stops the controller.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="$PWD/bin:$PWD/node_modules/.bin:$PATH"

data_dir=$(mktemp -d -t ingot-demo.XXXXXX)
controller_pid=''
cleanup() {
  if [[ -n $controller_pid ]] && kill -0 "$controller_pid" 2>/dev/null; then
    kill -TERM "$controller_pid" && wait "$controller_pid" 2>/dev/null || true
  fi
  rm -rf "$data_dir"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() {
  printf '$ %s\n' "$*"
  "$@"
}

step "Starting ingot-controller on the embedded database in $data_dir"
ingot-controller --data-dir "$data_dir" --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  >"$data_dir/controller.log" 2>&1 &
controller_pid=$!
endpoint=''
for _ in $(seq 300); do
  endpoint=$(sed -n 's/.*"grpc":"\([^"]*\)".*"msg":"controller serving".*/\1/p' "$data_dir/controller.log")
  [[ -n $endpoint ]] && break
  kill -0 "$controller_pid" 2>/dev/null || { cat "$data_dir/controller.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n $endpoint ]] || { echo "controller did not start; log:" >&2; cat "$data_dir/controller.log" >&2; exit 1; }
export INGOT_ENDPOINT=$endpoint INGOT_DATA_DIR=$data_dir
echo "controller serving gRPC on $endpoint; bmctl reads its admin token from $data_dir/admin.token"

step "Registering a switch and three nodes (the seed's commands)"
run bmctl switch add 10.0.0.1 netops sw-secret juniper "rack 1 top-of-rack"
for n in 11 12 13; do
  run bmctl node add "10.0.1.$n" "52:54:00:00:01:$n" 8 16384 500 "10.0.2.$n" root calvin 10.0.0.1 "ge-0/0/$n"
done
run bmctl node maintenance node-525400000113 on --reason "replacing a fan"

step "Tenants, flavors and the placement setup of the seed's second post"
run bmctl project create secure --isolated
run bmctl project create common
run bmctl flavor create bm.large --vcpus 8 --ram 16384 --disk 500
for h in compute-1 compute-2 secure-1; do run bmctl host add "$h" --vcpus 32 --ram 131072 --disk 2000; done
run bmctl aggregate create default nova
run bmctl aggregate add-host default compute-1
run bmctl aggregate add-host default compute-2
run bmctl aggregate create secure-pool nova
run bmctl aggregate add-host secure-pool secure-1
run bmctl aggregate set-metadata secure-pool project_id=secure

step "Booting: the scheduler claims a host for each instance (the seed's three cases)"
run bmctl flavor create vm.small --vcpus 2 --ram 4096 --disk 40
run bmctl boot --project secure --image ubuntu-24.04 --flavor vm.small web-1
run bmctl boot --project secure --image ubuntu-24.04 --flavor bm.large --hint compute_type=bare_metal db-1
run bmctl boot --project common --image ubuntu-24.04 --flavor vm.small app-1
run bmctl instance list
run bmctl schedule --project common --flavor bm.large --hint compute_type=bare_metal --explain

step "The inventory"
run bmctl switch list
run bmctl node list
run bmctl project list
run bmctl flavor list
run bmctl aggregate list
run bmctl node show node-525400000111

step "A mistake is one clear line"
run bmctl node add 10.0.1.14 52:54:00:00:01:zz 8 16384 500 10.0.2.14 root calvin 10.0.0.1 ge-0/0/14 || true

step "Done: stopping the controller"
