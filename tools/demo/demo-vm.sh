#!/usr/bin/env bash
# `make demo-vm` (root): Ingot provisioning real (virtual) machines. Two QEMU VMs (TCG) with
# simulated BMCs (ipmi_sim), NICs on the lab switch and empty disks (bin/ingot-lab up 2 --vm); a
# controller on the embedded database serving them with netboot (dnsmasq, iPXE) and the bootstrap
# image (make bootstrap); the VM test image (tools/lab/test-image.sh) uploaded; two instances booted
# with live progress: each VM powers on by IPMI, PXE-boots the bootstrap Linux, whose agent writes
# the image to /dev/vda; the port moves to the project network and the VM boots from its disk. Each
# VM's serial console then shows the deployed system's marker, and the VMs answer ping on the
# project network. Then everything is torn down. Takes ≈ 2-3 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="$PWD/bin:$PWD/node_modules/.bin:$PATH"

log() { printf 'demo-vm: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}
((EUID == 0)) || die 'make demo-vm builds network namespaces, bridges, taps and VMs: run it as root'
# shellcheck source=test/support/debian-packages.sh
source test/support/debian-packages.sh
ensure_debs "${LAB_DEBS[@]}" "${VM_DEBS[@]}"

work=$(mktemp -d -t ingot-demo-vm.XXXXXX)
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

step "Building the bootstrap image (Debian kernel + busybox; downloads the kernel once) and the VM test image"
BOOTSTRAP_BOOT_CHECK=0 bootstrap/build.sh
image=$(tools/lab/test-image.sh)
echo "test image: $image ($(du -k "$image" | cut -f1) KiB: MBR, FAT, syslinux, kernel, busybox initramfs)"

step "A lab of two QEMU virtual machines (BMC, NIC on the lab switch, empty disk each)"
run ingot-lab up 2 --vm --state "$lab_state"
host=$(lab .hostAddress)
http_port=$((20000 + RANDOM % 20000))

step "Starting ingot-controller on the embedded database, netboot (dnsmasq) on the lab's service network"
# console=ttyS0: the bootstrap image logs to the VMs' serial consoles. The dnsmasq lines send router
# advertisements, so that iPXE does not wait for IPv6 autoconfiguration.
cat >"$work/controller.json" <<EOF
{
  "dataDir": "$work/data",
  "grpcListen": "0.0.0.0:0",
  "httpListen": "$host:$http_port",
  "httpAdvertiseUrl": "http://$host:$http_port",
  "netboot": {
    "mode": "managed", "dir": "$work/netboot", "interface": "$(lab .serviceBridge)",
    "netns": "$(lab .switchNs)", "subnet": "$(lab .serviceSubnet)", "kernelArgs": "console=ttyS0",
    "extraOptions": $(node -e "import('./tools/lab/vm-lab.ts').then((m) => console.log(JSON.stringify(m.VM_NETBOOT_OPTIONS)))")
  }
}
EOF
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
echo "controller serving gRPC on $grpc, HTTP on $host:$http_port (bootstrap image at /boot/vmlinuz, /boot/initrd.img)"

step "Registering the switch, the networks and the VMs (root disk /dev/vda)"
run bmctl switch add --name lab-switch --address localhost --driver linux-bridge --description "lab switch" \
  --driver-option transport=local --driver-option "netns=$(lab .switchNs)"
run bmctl network create service --service --vlan 10 --bridge "$(lab .serviceBridge)"
run bmctl project create acme
run bmctl network create acme-net --project acme --vlan 20 --bridge "$(lab '.projectNetworks[0].bridge')"
for i in 0 1; do
  printf '%s\n' "$(lab ".nodes[$i].bmc.password")" >"$work/bmc-$i.pass"
  run bmctl node add "$(lab ".nodes[$i].serviceIp")" "$(lab ".nodes[$i].mac")" 1 1024 1 \
    "$(lab ".nodes[$i].bmc.address")" "$(lab ".nodes[$i].bmc.username")" - lab-switch "$(lab ".nodes[$i].switchPort")" \
    --name "$(lab ".nodes[$i].name")" --root-disk "$(lab ".nodes[$i].disk")" <"$work/bmc-$i.pass"
done
run bmctl flavor create bm.vm --vcpus 1 --ram 1024 --disk 1
run bmctl image create test-os --file "$image"

step "Booting two instances: IPMI power-on, PXE, bootstrap Linux, agent writes /dev/vda, port to acme-net, boot from disk"
run bmctl boot --project acme --image test-os --flavor bm.vm --hint compute_type=bare_metal --network acme-net \
  --wait vm1 vm2
run bmctl instance list --project acme

step "Each VM's serial console: the bootstrap image, then the deployed system's marker"
# A link-local address on the project bridge, to ping the test images' (they take 169.254.x.y/16 from their MAC).
ip -n "$(lab .switchNs)" addr add 169.254.255.1/16 dev "$(lab '.projectNetworks[0].bridge')"
for i in 0 1; do
  serial=$(lab ".nodes[$i].logFile")
  for _ in $(seq 120); do grep -q 'INGOT-TEST-IMAGE up' "$serial" && break; sleep 0.5; done
  echo "--- $(lab ".nodes[$i].name") ($serial, abridged)"
  # The firmware's screen (sgabios) comes with terminal escapes: stripped here.
  sed -E 's/\x1b\[[0-9;]*[A-Za-z]//g; s/\r//g' "$serial" |
    grep -E '^===|^Booting from|^Configuring|/boot/(vmlinuz|initrd\.img)\.\.\.|ingot-init: (network up|agent downloaded|starting the agent)|"msg":"deploy (started|finished)"|INGOT-TEST-IMAGE' |
    sed -E 's/^(.{160}).*/\1…/'
  grep -q 'INGOT-TEST-IMAGE up' "$serial" || die "no marker on $(lab ".nodes[$i].name")'s serial console"
  address=$(sed -n 's/.*INGOT-TEST-IMAGE up on .* at \([0-9.]*\).*/\1/p' "$serial" | tail -1)
  run ip netns exec "$(lab .switchNs)" busybox ping -c 2 -W 2 "$address"
done

step "Done: stopping the controller and tearing the lab down (QEMU by PID, taps with their namespace)"
kill -TERM "$controller_pid" && wait "$controller_pid" 2>/dev/null || true
controller_pid=''
run ingot-lab down --state "$lab_state"
