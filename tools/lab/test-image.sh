#!/usr/bin/env bash
# Builds the VM lab's test image: a tiny BIOS-bootable disk that Ingot deploys to QEMU nodes.
#
#   tools/lab/test-image.sh            # -> build/test-image/disk.img (TEST_IMAGE_OUT to change)
#
# Layout: an MBR (syslinux's mbr.bin) with one bootable FAT16 partition at 1 MiB holding syslinux
# (ldlinux.sys), syslinux.cfg, the bootstrap image's kernel (build/bootstrap/vmlinuz, `make
# bootstrap`) and a busybox initramfs made from the bootstrap initrd (busybox and its virtio NIC
# modules only) with its own /init (tools/lab/test-image-init). Built without root or loop devices:
# mkfs.fat -C, mtools, `syslinux --offset`. Needs syslinux, syslinux-common, mtools, dosfstools, fdisk.
#
# When booted the system prints `INGOT-TEST-IMAGE up on <mac> at <address>` on the serial console
# (ttyS0) and answers ping at an IPv4 link-local address derived from its MAC, so it needs no DHCP
# on the project network: 169.254.<1 + byte 5 % 254>.<1 + byte 6 % 254>/16 (bytes of the MAC,
# counted from 1), with an on-link default route so that peers of any subnet on the bridge get
# answers. The build is incremental: nothing happens when no input changed. Prints the path.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${TEST_IMAGE_OUT:-$REPO_ROOT/build/test-image}
BOOTSTRAP=${BOOTSTRAP_OUT:-$REPO_ROOT/build/bootstrap}
INIT=$REPO_ROOT/tools/lab/test-image-init
MBR=/usr/lib/syslinux/mbr/mbr.bin
FAT_MIB=15

log() { printf 'test-image: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

for tool in mkfs.fat mcopy syslinux sfdisk; do
  command -v "$tool" >/dev/null ||
    die "no $tool: apt-get install syslinux syslinux-common mtools dosfstools fdisk"
done
[[ -f $MBR ]] || die "no $MBR: apt-get install syslinux-common"
[[ -f $BOOTSTRAP/vmlinuz && -f $BOOTSTRAP/initrd.img ]] ||
  die "no bootstrap image in $BOOTSTRAP: run make bootstrap first"

FINGERPRINT=$(sha256sum "${BASH_SOURCE[0]}" "$INIT" "$BOOTSTRAP/vmlinuz" "$BOOTSTRAP/initrd.img" "$MBR" |
  cut -d' ' -f1 | sha256sum | cut -d' ' -f1)
if [[ -f $OUT/.fingerprint && $(cat "$OUT/.fingerprint") == "$FINGERPRINT" && -f $OUT/disk.img ]]; then
  echo "$OUT/disk.img"
  exit 0
fi
mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# The initramfs: the bootstrap initrd's busybox and virtio NIC modules, this image's init.
mkdir "$WORK/unpacked" "$WORK/root"
(cd "$WORK/unpacked" && gzip -dc "$BOOTSTRAP/initrd.img" | busybox cpio -i -d 2>/dev/null)
mkdir -p "$WORK/root"/{dev,proc,sys,run,tmp,bin,usr/lib/ingot}
cp -a "$WORK/unpacked/usr/lib/ingot/bin" "$WORK/root/usr/lib/ingot/"
ln -s ../usr/lib/ingot/bin/busybox "$WORK/root/bin/sh"
grep -E '/(virtio[a-z_]*|failover|net_failover)\.ko$' "$WORK/unpacked/usr/lib/ingot/modules" |
  grep -v -E 'virtio_(blk|scsi)' >"$WORK/root/usr/lib/ingot/modules"
while read -r ko; do
  mkdir -p "$WORK/root$(dirname "$ko")"
  cp "$WORK/unpacked$ko" "$WORK/root$ko"
done <"$WORK/root/usr/lib/ingot/modules"
install -m 0755 "$INIT" "$WORK/root/init"
(cd "$WORK/root" && find . -mindepth 1 | LC_ALL=C sort | busybox cpio -o -H newc 2>/dev/null) |
  gzip -9 >"$WORK/initrd.img"

# The FAT partition, as a file, then placed at 1 MiB of the disk.
cat >"$WORK/syslinux.cfg" <<'EOF'
SERIAL 0 115200
DEFAULT ingot-test
PROMPT 0
TIMEOUT 0
LABEL ingot-test
  KERNEL vmlinuz
  INITRD initrd.img
  APPEND console=ttyS0 quiet panic=-1
EOF
mkfs.fat -F 16 -n INGOT-TEST -h 2048 -C "$WORK/fat.img" $((FAT_MIB * 1024)) >/dev/null
mcopy -i "$WORK/fat.img" "$BOOTSTRAP/vmlinuz" "$WORK/initrd.img" "$WORK/syslinux.cfg" ::/
DISK=$WORK/disk.img
truncate -s $(((FAT_MIB + 1) * 1024 * 1024)) "$DISK"
printf 'label: dos\nlabel-id: 0x1a607e57\nstart=2048, type=6, bootable\n' | sfdisk -q "$DISK"
dd if="$WORK/fat.img" of="$DISK" bs=1M seek=1 conv=notrunc status=none
dd if="$MBR" of="$DISK" bs=440 count=1 conv=notrunc status=none
syslinux --offset $((2048 * 512)) --install "$DISK"

mv "$DISK" "$OUT/disk.img"
printf '%s\n' "$FINGERPRINT" >"$OUT/.fingerprint"
log "built $OUT/disk.img ($(du -k "$OUT/disk.img" | cut -f1) KiB, initramfs $(du -k "$WORK/initrd.img" | cut -f1) KiB)"
echo "$OUT/disk.img"
