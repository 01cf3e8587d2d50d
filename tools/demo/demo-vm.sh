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
# shellcheck source=tools/demo/demo-lab.sh
source tools/demo/demo-lab.sh
demo_setup demo-vm "${LAB_DEBS[@]}" "${VM_DEBS[@]}"

step "Building the bootstrap image (Debian kernel + busybox; downloads the kernel once) and the VM test image"
BOOTSTRAP_BOOT_CHECK=0 bootstrap/build.sh
image=$(tools/lab/test-image.sh)
echo "test image: $image ($(du -k "$image" | cut -f1) KiB: MBR, FAT, syslinux, kernel, busybox initramfs)"

step "A lab of two QEMU virtual machines (BMC, NIC on the lab switch, empty disk each)"
run ingot-lab up 2 --vm --state "$lab_state"
# console=ttyS0: the bootstrap image logs to the VMs' serial consoles. The dnsmasq lines send router
# advertisements, so that iPXE does not wait for IPv6 autoconfiguration.
start_controller "\"kernelArgs\": \"console=ttyS0\", \"extraOptions\": $(node -e "import('./tools/lab/vm-lab.ts').then((m) => console.log(JSON.stringify(m.VM_NETBOOT_OPTIONS)))")"
register_lab 2 1 1024 bm.vm
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

finish
