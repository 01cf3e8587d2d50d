#!/usr/bin/env bash
# `make demo` (root): a virtual data centre on this machine and `nova boot` on it, end to end.
# A lab of three virtual bare-metal nodes (bin/ingot-lab: namespaces, Linux bridges as the switch,
# loop devices as disks, ipmi_sim BMCs), a controller on the embedded database serving it, the
# seed's registration commands, an image uploaded, a hand-prepared server captured into another,
# three instances of the captured image booted in parallel with live progress,
# ACTIVE on their project network (one pings another across it), one deleted (disk wiped, node
# available again), then everything is torn down.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="$PWD/bin:$PWD/node_modules/.bin:$PATH"

log() { printf 'demo: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}
((EUID == 0)) || die 'make demo builds network namespaces, bridges and loop devices: run it as root'
# shellcheck source=test/support/debian-packages.sh
source test/support/debian-packages.sh
ensure_debs "${LAB_DEBS[@]}"

work=$(mktemp -d -t ingot-demo.XXXXXX)
chmod 755 "$work" # dnsmasq (as nobody) reads the netboot directory inside
lab_state=$work/lab.json
controller_pid=''
cleanup() {
  set +e
  if [[ -n $controller_pid ]] && kill -0 "$controller_pid" 2>/dev/null; then
    kill -TERM "$controller_pid" && wait "$controller_pid" 2>/dev/null
  fi
  [[ -f $lab_state ]] && ingot-lab down --state "$lab_state" >/dev/null
  rm -rf "$work"
  debs_cleanup
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() {
  printf '$ %s\n' "$*"
  "$@"
}
# A field of the lab's description: `lab '.nodes[0].mac'`.
lab() { node -e "const l = JSON.parse(require('fs').readFileSync('$lab_state', 'utf8')); console.log(eval('l' + process.argv[1]))" "$1"; }

step "A lab of three virtual bare-metal nodes (BMC, NIC on the lab switch, loop-device disk each)"
run ingot-lab up 3 --state "$lab_state"
host=$(lab .hostAddress)
http_port=$((20000 + RANDOM % 20000))

step "Starting ingot-controller on the embedded database, netboot (dnsmasq) on the lab's service network"
cat >"$work/controller.json" <<EOF
{
  "dataDir": "$work/data",
  "grpcListen": "0.0.0.0:0",
  "httpListen": "$host:$http_port",
  "httpAdvertiseUrl": "http://$host:$http_port",
  "netboot": {
    "mode": "managed", "dir": "$work/netboot", "interface": "$(lab .serviceBridge)",
    "netns": "$(lab .switchNs)", "subnet": "$(lab .serviceSubnet)"
  }
}
EOF
# gRPC listens on every address: bmctl dials loopback, the nodes' agents the lab side (.1).
ingot-controller --config "$work/controller.json" >"$work/controller.log" 2>&1 &
controller_pid=$!
grpc=''
for _ in $(seq 600); do
  grpc=$(sed -n 's/.*"grpc":"\([^"]*\)".*"msg":"controller serving".*/\1/p' "$work/controller.log")
  [[ -n $grpc ]] && break
  kill -0 "$controller_pid" 2>/dev/null || { cat "$work/controller.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n $grpc ]] || { echo "controller did not start; log:" >&2; cat "$work/controller.log" >&2; exit 1; }
export INGOT_ENDPOINT=127.0.0.1:${grpc##*:} INGOT_DATA_DIR=$work/data
echo "controller serving gRPC on $grpc, HTTP on $host:$http_port; log in $work/controller.log"

step "Registering the switch, the networks and the nodes (the seed's commands)"
run bmctl switch add --name lab-switch --address localhost --driver linux-bridge --description "lab switch" \
  --driver-option transport=local --driver-option "netns=$(lab .switchNs)"
run bmctl network create service --service --vlan 10 --bridge "$(lab .serviceBridge)"
run bmctl project create acme
run bmctl network create acme-net --project acme --vlan 20 --bridge "$(lab '.projectNetworks[0].bridge')"
for i in 0 1 2; do
  printf '%s\n' "$(lab ".nodes[$i].bmc.password")" >"$work/bmc-$i.pass"
  run bmctl node add "$(lab ".nodes[$i].serviceIp")" "$(lab ".nodes[$i].mac")" 2 2048 1 \
    "$(lab ".nodes[$i].bmc.address")" "$(lab ".nodes[$i].bmc.username")" - lab-switch "$(lab ".nodes[$i].switchPort")" \
    --name "$(lab ".nodes[$i].name")" --root-disk "$(lab ".nodes[$i].disk")" <"$work/bmc-$i.pass"
done
run bmctl flavor create bm.lab --vcpus 2 --ram 2048 --disk 1

step "An image: a small bootable lab disk, uploaded to the image store"
node -e "import('./tools/lab/lab-image.ts').then((m) => m.buildLabImage('$work/lab-os.raw', { sizeMiB: 32, marker: 'lab-os 1.0' }))"
run bmctl image create lab-os --file "$work/lab-os.raw"

step "A server prepared by hand (an OS on its disk, MBR partition over it) captured into an image: netboot, agent, dd | nc"
prepared=$(lab '.nodes[2].name')
cp "$work/lab-os.raw" "$work/prepared.raw"
printf 'label: dos\nstart=2048, size=63488, type=83, bootable\n' | sfdisk -q "$work/prepared.raw"
dd if="$work/prepared.raw" of="$(lab '.nodes[2].disk')" bs=1M conv=notrunc,fsync status=none
run bmctl image capture "$prepared" --name golden --to-last-partition
run bmctl image list

step "Booting three instances of the captured image at once: PXE, agent, image streamed to disk, port to acme-net, boot from disk"
run bmctl boot --project acme --image golden --flavor bm.lab --hint compute_type=bare_metal --network acme-net \
  --wait web1 web2 web3
run bmctl instance list --project acme
run bmctl instance show web1 --project acme

step "They are on the project network: web1 pings web2 across acme-net"
ns_of() { lab ".nodes.find((n) => n.name === '$(bmctl instance show "$1" --project acme -o json | node -e "console.log(JSON.parse(require('fs').readFileSync(0, 'utf8')).host_name)")').$2"; }
web2_ip=$(ns_of web2 projectIp)
run ip netns exec "$(ns_of web1 ns)" busybox ping -c 2 -W 1 "${web2_ip%/*}"
node_of_web2=$(bmctl instance show web2 --project acme -o json | node -e "console.log(JSON.parse(require('fs').readFileSync(0, 'utf8')).host_name)")

step "Deleting web2: the node netboots again, its disk is wiped, it is powered off and back in the pool"
run bmctl instance delete web2 --project acme --wait
run bmctl node show "$node_of_web2"
run bmctl node list

step "Done: stopping the controller and tearing the lab down"
kill -TERM "$controller_pid" && wait "$controller_pid" 2>/dev/null || true
controller_pid=''
run ingot-lab down --state "$lab_state"
