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
# shellcheck source=tools/demo/demo-lab.sh
source tools/demo/demo-lab.sh
demo_setup demo "${LAB_DEBS[@]}"

step "A lab of three virtual bare-metal nodes (BMC, NIC on the lab switch, loop-device disk each)"
run ingot-lab up 3 --state "$lab_state"
start_controller ''
register_lab 3 2 2048 bm.lab

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

finish
