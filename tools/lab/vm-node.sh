#!/bin/sh
# A VM lab node's machine: what its simulated BMC powers on (`vm-node.sh VM_ENV BMC_DIR`, run inside
# the lab's switch namespace, where its NIC's tap is). It becomes QEMU (exec: the BMC's node.pid is
# QEMU's PID, so power off and reset kill QEMU by PID), booting by the device the BMC last stored in
# BMC_DIR/boot, as firmware would:
#
#   pxe           the NIC's iPXE option ROM (DHCP, then the controller's iPXE script)
#   default, disk the virtio disk (the MBR of whatever was deployed)
#   anything else the disk, then the network
#
# VM_ENV (written by vm-lab.ts) sets NAME, MAC, TAP, DISK_FILE, SERIAL_LOG, MEMORY_MIB and ACCEL
# (tcg; kvm only where /dev/kvm runs stock guests). The serial console is appended to SERIAL_LOG
# across power cycles, firmware included (sgabios: SeaBIOS's and iPXE's screen output, with terminal
# escapes); QEMU's own messages go to the BMC's node.log. A guest reboot restarts the
# VM with the same boot device; a guest power-off ends QEMU, so the BMC reports power off.
set -eu
. "$1"
dir=$2
case $(cat "$dir/boot" 2>/dev/null || echo none) in
pxe) order=n ;;
default | disk) order=c ;;
*) order=cn ;;
esac
printf '=== %s: power on, boot order %s (%s) ===\n' "$(date -u +%FT%TZ)" "$order" "$NAME" >>"$SERIAL_LOG"
exec qemu-system-x86_64 -name "$NAME" -machine pc -accel "$ACCEL" -m "$MEMORY_MIB" -smp 1 \
  -display none -vga none -monitor none -nodefaults -device sga \
  -drive "file=$DISK_FILE,format=raw,if=virtio,cache=writeback" \
  -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" \
  -device "virtio-net-pci,netdev=n0,mac=$MAC" \
  -boot "order=$order" \
  -chardev "file,id=s0,path=$SERIAL_LOG,append=on" -serial chardev:s0
