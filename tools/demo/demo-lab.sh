# Sourced by tools/demo/demo.sh and demo-vm.sh: what both demos do around their own story — the
# checks and packages, a work directory removed on exit with everything started in it, a controller
# on the embedded database with netboot on the lab's service network, and the lab registered with
# the seed's commands.
#
#   demo_setup demo-vm "${LAB_DEBS[@]}" "${VM_DEBS[@]}"   # root check, packages, $work, cleanup on exit
#   run ingot-lab up 2 --vm --state "$lab_state"            # the demo brings its lab up
#   start_controller '"kernelArgs": "console=ttyS0"'      # extra netboot settings (JSON members), may be empty
#   register_lab 2 1 1024 bm.vm                            # nodes, their CPUs and RAM, the flavor to create
#   finish                                                 # stop the controller, tear the lab down
#
# The caller runs under `set -euo pipefail` from the repository's root.
export PATH="$PWD/bin:$PWD/node_modules/.bin:$PATH"
# shellcheck source=test/support/debian-packages.sh
source test/support/debian-packages.sh

controller_pid=''
work=''
lab_state=''

demo_setup() {
  local name=$1
  shift
  log() { printf '%s: %s\n' "$name" "$*" >&2; }
  die() {
    log "$*"
    exit 1
  }
  ((EUID == 0)) || die "make $name builds network namespaces, bridges and virtual nodes: run it as root"
  ensure_debs "$@"
  work=$(mktemp -d -t "ingot-$name.XXXXXX")
  chmod 755 "$work" # dnsmasq (as nobody) reads the netboot directory inside
  lab_state=$work/lab.json
  trap cleanup EXIT
}

cleanup() {
  set +e
  if [[ -n $controller_pid ]] && kill -0 "$controller_pid" 2>/dev/null; then
    kill -TERM "$controller_pid" && wait "$controller_pid" 2>/dev/null
  fi
  [[ -f $lab_state ]] && ingot-lab down --state "$lab_state" >/dev/null
  rm -rf "$work"
  debs_cleanup
}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() {
  printf '$ %s\n' "$*"
  "$@"
}
# A field of the lab's description: `lab '.nodes[0].mac'`.
lab() { node -e "const l = JSON.parse(require('fs').readFileSync('$lab_state', 'utf8')); console.log(eval('l' + process.argv[1]))" "$1"; }

# Starts ingot-controller on the embedded database, netboot on the lab's service network; $1: more
# netboot settings as JSON members. Exports INGOT_ENDPOINT and INGOT_DATA_DIR for bmctl.
start_controller() {
  local extra=${1:+, $1}
  step "Starting ingot-controller on the embedded database, netboot (dnsmasq) on the lab's service network"
  local host http_port
  host=$(lab .hostAddress)
  http_port=$((20000 + RANDOM % 20000))
  cat >"$work/controller.json" <<JSON
{
  "dataDir": "$work/data",
  "grpcListen": "0.0.0.0:0",
  "httpListen": "$host:$http_port",
  "httpAdvertiseUrl": "http://$host:$http_port",
  "netboot": {
    "mode": "managed", "dir": "$work/netboot", "interface": "$(lab .serviceBridge)",
    "netns": "$(lab .switchNs)", "subnet": "$(lab .serviceSubnet)"$extra
  }
}
JSON
  # gRPC listens on every address: bmctl dials loopback, the nodes' agents the lab side (.1).
  ingot-controller --config "$work/controller.json" >"$work/controller.log" 2>&1 &
  controller_pid=$!
  local grpc=''
  for _ in $(seq 600); do
    grpc=$(sed -n 's/.*"grpc":"\([^"]*\)".*"msg":"controller serving".*/\1/p' "$work/controller.log")
    [[ -n $grpc ]] && break
    kill -0 "$controller_pid" 2>/dev/null || { cat "$work/controller.log" >&2; exit 1; }
    sleep 0.1
  done
  [[ -n $grpc ]] || { echo "controller did not start; log:" >&2; cat "$work/controller.log" >&2; exit 1; }
  export INGOT_ENDPOINT=127.0.0.1:${grpc##*:} INGOT_DATA_DIR=$work/data
  echo "controller serving gRPC on $grpc, HTTP on $host:$http_port (boot files, images); log in $work/controller.log"
}

# Registers the lab with the seed's commands: the switch, the service and project networks, nodes
# 0 to $1 - 1 with $2 CPUs and $3 MiB of RAM each, and flavor $4 that fits them.
register_lab() {
  local count=$1 cpus=$2 ram=$3 flavor=$4 i
  step "Registering the switch, the networks and the nodes (the seed's commands)"
  run bmctl switch add --name lab-switch --address localhost --driver linux-bridge --description "lab switch" \
    --driver-option transport=local --driver-option "netns=$(lab .switchNs)"
  run bmctl network create service --service --vlan 10 --bridge "$(lab .serviceBridge)"
  run bmctl project create acme
  run bmctl network create acme-net --project acme --vlan 20 --bridge "$(lab '.projectNetworks[0].bridge')"
  for ((i = 0; i < count; i++)); do
    printf '%s\n' "$(lab ".nodes[$i].bmc.password")" >"$work/bmc-$i.pass"
    run bmctl node add "$(lab ".nodes[$i].serviceIp")" "$(lab ".nodes[$i].mac")" "$cpus" "$ram" 1 \
      "$(lab ".nodes[$i].bmc.address")" "$(lab ".nodes[$i].bmc.username")" - lab-switch "$(lab ".nodes[$i].switchPort")" \
      --name "$(lab ".nodes[$i].name")" --root-disk "$(lab ".nodes[$i].disk")" <"$work/bmc-$i.pass"
  done
  run bmctl flavor create "$flavor" --vcpus "$cpus" --ram "$ram" --disk 1
}

finish() {
  step "Done: stopping the controller and tearing the lab down"
  kill -TERM "$controller_pid" && wait "$controller_pid" 2>/dev/null || true
  controller_pid=''
  run ingot-lab down --state "$lab_state"
}
