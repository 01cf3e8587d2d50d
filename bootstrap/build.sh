#!/usr/bin/env bash
# Builds Ingot's bootstrap Linux image (`make bootstrap`): a kernel and an initramfs whose init
# (bootstrap/init) brings up networking with DHCP, downloads the agent from the controller, checks
# its SHA-256 and runs it. The agent is not in the image: every boot runs the controller's current one.
#
#   bootstrap/build.sh                        # Debian kernel + busybox-static + Ingot's init
#   TINYCORE=path/to/core.gz bootstrap/build.sh   # remaster a Tiny Core core.gz instead
#
# Output (BOOTSTRAP_OUT, default build/bootstrap): vmlinuz, initrd.img. The build is incremental: it
# fingerprints its inputs and does nothing when none changed. Prints the sizes, and (when QEMU is
# installed and BOOTSTRAP_BOOT_CHECK is not 0) boots the image once under QEMU to measure the time
# from power-on to the network being up.
#
# Kernel: the newest `linux-image-<version>-amd64` the local apt lists know (or BOOTSTRAP_KERNEL=
# linux-image-6.1.0-56-amd64), fetched once with `apt-get download` into build/bootstrap-cache and
# extracted with dpkg-deb; once cached, no network is needed. Its modules for the NICs and disks
# servers and VMs have (MODULES below) are copied in with their dependencies, in load order.
#
# Libraries: the agent is a Node.js single-executable application; the shared libraries it links
# (`ldd build/ingot-agent`, or of the Node.js it is built from when it is not built yet) are copied in.
#
# Tiny Core remaster (TINYCORE=core.gz): core.gz is a gzip'd newc cpio. Its files are kept, its /init
# is moved to /init.tinycore and Ingot's init becomes /init (not Tiny Core's bootsync.sh hook: Tiny
# Core's tc-config would start its own DHCP client and module loading first, and the image must behave
# the same whatever the base). Ingot's init and busybox live under /usr/lib/ingot, so the base's own
# busybox (32-bit in core.gz) is never used. The kernel and modules are still Debian's: core.gz has
# modules only for Tiny Core's kernel.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${BOOTSTRAP_OUT:-$REPO_ROOT/build/bootstrap}
CACHE=${BOOTSTRAP_CACHE:-$REPO_ROOT/build/bootstrap-cache}
TINYCORE=${TINYCORE:-}
INIT=$REPO_ROOT/bootstrap/init
BUSYBOX=${BOOTSTRAP_BUSYBOX:-/bin/busybox}

# Loaded by the init in this order (each after its dependencies); a module missing from the kernel
# package is an error. NICs: virtio, Intel (e1000, e1000e, igb, ixgbe, i40e), Broadcom (tg3, bnx2,
# bnxt_en), Realtek. Disks: virtio, SATA (ahci), NVMe, SAS/RAID (mpt3sas, megaraid_sas), SCSI disks.
MODULES=(
  virtio_pci virtio_net virtio_blk virtio_scsi
  e1000 e1000e igb ixgbe i40e tg3 bnx2 bnxt_en r8169
  ahci nvme mpt3sas megaraid_sas sd_mod
)

log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

[[ -x $BUSYBOX ]] || die "no busybox at $BUSYBOX: apt-get install busybox-static"
[[ $($BUSYBOX 2>&1 | head -1) == *BusyBox* ]] || die "$BUSYBOX is not busybox"
file_info=$(LC_ALL=C ldd "$BUSYBOX" 2>&1 || true)
[[ $file_info == *'not a dynamic'* ]] || die "$BUSYBOX is not statically linked: apt-get install busybox-static"
if [[ -n $TINYCORE ]]; then
  [[ -f $TINYCORE ]] || die "TINYCORE=$TINYCORE: no such file"
  TINYCORE=$(realpath "$TINYCORE")
  gzip -t "$TINYCORE" 2>/dev/null || die "TINYCORE=$TINYCORE is not gzip'd (Tiny Core's core.gz is a gzip'd newc cpio)"
fi
mkdir -p "$OUT" "$CACHE"

# --- 1. Kernel package: the newest known to apt, downloaded once ------------------------------------

# The newest linux-image-<ver>-amd64 in the apt lists (no network needed).
newest_kernel_package() {
  apt-cache search --names-only '^linux-image-[0-9.]+-[0-9]+-amd64$' 2>/dev/null |
    awk '{print $1}' | sort -V | tail -1
}

# The newest kernel .deb already in the cache, if any.
newest_cached_deb() {
  find "$CACHE" -maxdepth 1 -name 'linux-image-*-amd64_*_amd64.deb' -printf '%f\n' 2>/dev/null |
    { grep -v -- '-dbg' || true; } | sort -V | tail -1
}

PACKAGE=${BOOTSTRAP_KERNEL:-$(newest_kernel_package)}
DEB=''
if [[ -n $PACKAGE ]]; then
  DEB=$(find "$CACHE" -maxdepth 1 -name "${PACKAGE}_*_amd64.deb" -printf '%f\n' | sort -V | tail -1)
  if [[ -z $DEB ]]; then
    log "downloading $PACKAGE from the Debian archive into $CACHE"
    if ! (cd "$CACHE" && apt-get -q download "$PACKAGE" 2>"$CACHE/apt-get.log" >&2); then
      DEB=$(newest_cached_deb)
      [[ -n $DEB ]] || die "cannot download $PACKAGE from the Debian archive ($({ grep -m1 -A1 -E '^(E|Err):' "$CACHE/apt-get.log" || tail -1 "$CACHE/apt-get.log"; } | tr -s ' \n' ' ' | sed 's/ $//')). Check the network and the apt sources, or put a linux-image-*-amd64 .deb into $CACHE"
      log "warning: cannot download $PACKAGE; using the cached $DEB"
    else
      DEB=$(find "$CACHE" -maxdepth 1 -name "${PACKAGE}_*_amd64.deb" -printf '%f\n' | sort -V | tail -1)
    fi
  fi
else
  DEB=$(newest_cached_deb)
  [[ -n $DEB ]] || die 'apt knows no linux-image-*-amd64 package and none is cached: run apt-get update (needs the Debian archive), or put a linux-image .deb into '"$CACHE"
fi
[[ -n $DEB && -f $CACHE/$DEB ]] || die "the kernel package $PACKAGE did not download into $CACHE"

# --- 2. Fingerprint: nothing to do when no input changed ------------------------------------------

# The agent's libraries: of the built agent, else of the Node.js it is built from (same binary).
AGENT_EXE=$REPO_ROOT/build/ingot-agent
[[ -x $AGENT_EXE ]] || AGENT_EXE=$(command -v node) || die 'neither build/ingot-agent nor node found'
mapfile -t LIBS < <(LC_ALL=C ldd "$AGENT_EXE" | grep -oE '/[^ ]+' | sort -u)
((${#LIBS[@]} > 0)) || die "ldd $AGENT_EXE listed no libraries"
# Name resolution (the controller may be given by host name).
for lib in /lib/x86_64-linux-gnu/libnss_dns.so.2 /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libresolv.so.2; do
  [[ -e $lib ]] && LIBS+=("$lib")
done

FINGERPRINT=$(
  {
    # Contents only: the same inputs under other paths (make's relative, a test's absolute) match.
    sha256sum "${BASH_SOURCE[0]}" "$INIT" "$BUSYBOX" "$CACHE/$DEB" "${LIBS[@]}" ${TINYCORE:+"$TINYCORE"} | cut -d' ' -f1
    printf '%s\n' "${LIBS[@]}"
  } | sha256sum | cut -d' ' -f1
)
report_sizes() {
  log "kernel   $OUT/vmlinuz     $(du -k "$OUT/vmlinuz" | cut -f1) KiB ($DEB)"
  log "initrd   $OUT/initrd.img  $(du -k "$OUT/initrd.img" | cut -f1) KiB (unpacked $(cat "$OUT/.unpacked-kib") KiB)"
}
if [[ -f $OUT/.fingerprint && $(cat "$OUT/.fingerprint") == "$FINGERPRINT" && -f $OUT/vmlinuz && -f $OUT/initrd.img ]]; then
  log "up to date ($OUT)"
  report_sizes
  exit 0
fi
BUILD_START=$(date +%s.%N)

# --- 3. Kernel and modules ------------------------------------------------------------------------

WORK=$(mktemp -d "$REPO_ROOT/build/.bootstrap-work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
KERNEL_TREE=$WORK/kernel
dpkg-deb -x "$CACHE/$DEB" "$KERNEL_TREE"
VMLINUZ=$(find "$KERNEL_TREE/boot" -name 'vmlinuz-*' | head -1)
[[ -n $VMLINUZ ]] || die "$DEB has no /boot/vmlinuz-*"
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR=$KERNEL_TREE/lib/modules/$KVER
[[ -d $MODDIR ]] || die "$DEB has no /lib/modules/$KVER"

ROOT=$WORK/root
mkdir -p "$ROOT"
if [[ -n $TINYCORE ]]; then
  log "remastering $TINYCORE"
  (cd "$ROOT" && gzip -dc "$TINYCORE" | "$BUSYBOX" cpio -i -d -m -u 2>/dev/null) ||
    die "TINYCORE=$TINYCORE: cannot unpack it as a newc cpio"
  if [[ -e $ROOT/init || -L $ROOT/init ]]; then mv "$ROOT/init" "$ROOT/init.tinycore"; fi
fi
mkdir -p "$ROOT"/{dev,proc,sys,run,tmp,etc,lib64,usr/lib/ingot/bin,lib/modules/"$KVER"}
chmod 1777 "$ROOT/tmp"

# Modules: name → file (module names treat - and _ alike), then dependencies first.
declare -A KO=()
while read -r f; do
  name=${f##*/}
  name=${name%.ko}
  KO[${name//-/_}]=$f
done < <(find "$MODDIR/kernel" -name '*.ko')
declare -A SEEN=()
ORDER=()
add_module() {
  local name=${1//-/_} dep deps
  [[ -n ${SEEN[$name]:-} ]] && return 0
  SEEN[$name]=1
  [[ -n ${KO[$name]:-} ]] || die "kernel $KVER has no module $name"
  deps=$(tr '\0' '\n' <"${KO[$name]}" | sed -n 's/^depends=//p' | head -1)
  for dep in ${deps//,/ }; do add_module "$dep"; done
  ORDER+=("$name")
}
for m in "${MODULES[@]}"; do add_module "$m"; done
: >"$ROOT/usr/lib/ingot/modules"
for name in "${ORDER[@]}"; do
  rel=${KO[$name]#"$MODDIR"/}
  mkdir -p "$ROOT/lib/modules/$KVER/$(dirname "$rel")"
  cp "${KO[$name]}" "$ROOT/lib/modules/$KVER/$rel"
  printf '/lib/modules/%s/%s\n' "$KVER" "$rel" >>"$ROOT/usr/lib/ingot/modules"
done

# --- 4. busybox, the init, the agent's libraries ----------------------------------------------------

cp "$BUSYBOX" "$ROOT/usr/lib/ingot/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [[ $applet == busybox ]] || ln -sf busybox "$ROOT/usr/lib/ingot/bin/$applet"
done
install -m 0755 "$INIT" "$ROOT/init"
for lib in "${LIBS[@]}"; do
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
done
if [[ -z $TINYCORE ]]; then
  # What a few programs expect to exist; a Tiny Core base brings its own.
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
  printf 'root:x:0:\n' >"$ROOT/etc/group"
  mkdir -p "$ROOT/bin" "$ROOT/root"
  ln -sf ../usr/lib/ingot/bin/busybox "$ROOT/bin/sh"
fi
printf 'hosts: files dns\n' >"$ROOT/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n' >"$ROOT/etc/hosts"

# --- 5. Pack ----------------------------------------------------------------------------------------

du -sk "$ROOT" | cut -f1 >"$WORK/unpacked-kib"
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc 2>/dev/null) |
  gzip -6 >"$WORK/initrd.img"
cp "$VMLINUZ" "$WORK/vmlinuz"
mv "$WORK/vmlinuz" "$OUT/vmlinuz"
mv "$WORK/initrd.img" "$OUT/initrd.img"
mv "$WORK/unpacked-kib" "$OUT/.unpacked-kib"
printf '%s\n' "$FINGERPRINT" >"$OUT/.fingerprint"
log "built in $(awk -v s="$BUILD_START" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}') s: kernel $KVER, ${#ORDER[@]} modules, ${#LIBS[@]} libraries${TINYCORE:+, base $TINYCORE}"
report_sizes

# --- 6. Boot time (QEMU, TCG) -----------------------------------------------------------------------

if [[ ${BOOTSTRAP_BOOT_CHECK:-1} != 0 ]] && command -v qemu-system-x86_64 >/dev/null; then
  log 'boot check: booting the image under QEMU (TCG) until its network is up (BOOTSTRAP_BOOT_CHECK=0 skips this)'
  SERIAL=$WORK/serial.log
  start=$(date +%s.%N)
  timeout 120 qemu-system-x86_64 -machine q35 -accel tcg -m 256 -nographic -no-reboot \
    -kernel "$OUT/vmlinuz" -initrd "$OUT/initrd.img" \
    -append 'console=ttyS0 panic=-1 quiet ingot.selftest=1' \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
    -serial "file:$SERIAL" -monitor none -display none </dev/null >/dev/null 2>&1 || true
  elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}')
  if grep -q 'ingot-init: selftest passed' "$SERIAL"; then
    up=$(sed -n 's/.*\[ *\([0-9.]*\)\] ingot-init: network up.*/\1/p' "$SERIAL" | head -1)
    log "boot check: network up ${up:-?} s after the kernel started (QEMU TCG; ${elapsed} s for the whole run)"
  else
    log "warning: boot check failed; the serial console said:"
    tail -20 "$SERIAL" >&2 || true
  fi
fi
