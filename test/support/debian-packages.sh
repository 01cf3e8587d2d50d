# Sourced by test/support/run-tests.sh and bench/*/run.sh: installs missing Debian packages.
#
#   ensure_debs postgresql procps   # installs what is missing when root; as another user, dies naming it
#   debs_cleanup                     # in the caller's EXIT trap: removes a policy-rc.d left by an interrupted install
#
# The caller defines log() and die() (one line on stderr each) and runs under `set -euo pipefail`.

POLICY_RC_CREATED=''

# What a virtual lab (tools/lab) needs: namespaces and bridges, simulated BMCs and the IPMI driver,
# dnsmasq for netboot, busybox (DHCP client, ping) and loop devices.
# shellcheck disable=SC2034 # used by the scripts that source this file
LAB_DEBS=(procps iproute2 openipmi ipmitool dnsmasq busybox-static util-linux fdisk)
# What a VM lab adds (vm-lab.ts, tools/lab/test-image.sh, bootstrap/build.sh): QEMU and its iPXE
# ROMs, the test image's boot loader and FAT tools, and what builds the bootstrap image.
# shellcheck disable=SC2034 # used by the scripts that source this file
VM_DEBS=(qemu-system-x86 ipxe-qemu syslinux syslinux-common mtools dosfstools fdisk)

# The packages of "$@" that are not installed, one a line.
missing_debs() {
  local p
  for p in "$@"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) == 'install ok installed' ]] || printf '%s\n' "$p"
  done
}

ensure_debs() {
  command -v dpkg-query >/dev/null || die "not a Debian system (no dpkg-query): install by hand: $*"
  local missing
  mapfile -t missing < <(missing_debs "$@")
  ((${#missing[@]} == 0)) && return 0
  ((EUID == 0)) || die "missing Debian packages: ${missing[*]}; install them as root:" \
    "apt-get install --no-install-recommends ${missing[*]} (or run the tests as root)"

  # One install at a time when several runs start together; another run may have done it meanwhile.
  exec 9>/var/lock/ingot-test-apt.lock
  flock -w 1200 9 || die 'timed out waiting for another test run to install packages'
  mapfile -t missing < <(missing_debs "$@")
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    # Packages like postgresql and dnsmasq start their system service on install; the suite starts
    # its own instances instead, so forbid that (Debian's policy-rc.d mechanism) while installing.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      POLICY_RC_CREATED=1
      printf '#!/bin/sh\n# ingot run-tests.sh: no service starts during package installs\nexit 101\n' \
        >/usr/sbin/policy-rc.d
      chmod 755 /usr/sbin/policy-rc.d
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get -q -o DPkg::Lock::Timeout=600 update
    apt-get -q -y -o DPkg::Lock::Timeout=600 install --no-install-recommends "${missing[@]}"
    if [[ -n $POLICY_RC_CREATED ]]; then
      rm -f /usr/sbin/policy-rc.d
      POLICY_RC_CREATED=''
    fi
    mapfile -t missing < <(missing_debs "$@")
    ((${#missing[@]} == 0)) || die "still missing after apt-get install: ${missing[*]}"
  fi
  exec 9>&-
}

debs_cleanup() {
  if [[ -n $POLICY_RC_CREATED ]]; then rm -f /usr/sbin/policy-rc.d; fi
}
