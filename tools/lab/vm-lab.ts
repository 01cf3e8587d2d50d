/**
 * The VM lab's nodes (virtual-lab.ts with `vm`): each node a QEMU virtual machine whose NIC is a
 * tap `p<i>` in the lab's switch namespace (plugged into the service bridge, so the Linux-bridge
 * switch driver moves it like any port), whose disk is a sparse raw file (`/dev/vda` in the guest),
 * whose firmware is SeaBIOS with QEMU's iPXE option ROM (package ipxe-qemu), and whose serial
 * console is appended to a file. Its simulated BMC runs tools/lab/vm-node.sh on power-on, which
 * becomes QEMU booting from the network or the disk by the BMC's boot device.
 *
 * Nothing here outlives the lab: the taps go with the switch namespace, QEMU is killed by PID
 * (the BMC's power off, the lab's stop), and the disk files live in the lab's directory.
 */
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const VM_NODE = fileURLToPath(new URL('./vm-node.sh', import.meta.url));

/**
 * dnsmasq lines for the controller's `netboot.extraOptions` in a VM lab: router advertisements on
 * the service bridge (which has an IPv6 address in VM labs), without which iPXE waits ≈ 13 s for
 * IPv6 autoconfiguration at every PXE boot.
 */
export const VM_NETBOOT_OPTIONS = ['enable-ra', 'dhcp-range=::,constructor:br-svc,ra-only'];

/** The QEMU side of the VM lab. */
export interface VmOptions {
  /** Guest RAM: the bootstrap image keeps the ≈ 125 MB agent in RAM. @default 1024 */
  memoryMiB?: number;
  /**
   * QEMU accelerator. KVM only where /dev/kvm runs stock guests (on these machines it hangs them).
   * @default 'tcg'
   */
  accel?: 'tcg' | 'kvm';
}

export interface VmNodeFiles {
  /** The guest's disk on the host (raw, sparse). */
  diskFile: string;
  /** The serial console, appended to across power cycles. */
  serialLog: string;
  /** What the BMC runs on power-on (it appends the BMC directory). */
  nodeCommand: string[];
}

/**
 * Creates node `index`'s tap `p<index>` in `switchNs` on `bridge`, its disk file and its
 * environment file under `dir`.
 */
export async function createVmNode(o: {
  switchNs: string;
  bridge: string;
  index: number;
  name: string;
  mac: string;
  dir: string;
  diskBytes: number;
  ipBinary: string;
  vm: VmOptions;
}): Promise<VmNodeFiles> {
  const tap = `p${o.index}`;
  await ip(['-n', o.switchNs, 'tuntap', 'add', 'dev', tap, 'mode', 'tap']);
  await ip(['-n', o.switchNs, 'link', 'set', 'dev', tap, 'master', o.bridge]);
  await ip(['-n', o.switchNs, 'link', 'set', 'dev', tap, 'up']);
  const diskFile = join(o.dir, 'disks', `${o.name}.img`);
  writeFileSync(diskFile, '');
  truncateSync(diskFile, o.diskBytes);
  const serialLog = join(o.dir, 'nodes', `${o.name}.serial.log`);
  writeFileSync(serialLog, '');
  const env = {
    NAME: o.name,
    MAC: o.mac,
    TAP: tap,
    DISK_FILE: diskFile,
    SERIAL_LOG: serialLog,
    MEMORY_MIB: String(o.vm.memoryMiB ?? 1024),
    ACCEL: o.vm.accel ?? 'tcg',
  };
  const envFile = join(o.dir, 'nodes', `${o.name}.env`);
  writeFileSync(
    envFile,
    Object.entries(env)
      .map(([k, v]) => `${k}=${shellQuote(v)}\n`)
      .join(''),
  );
  return { diskFile, serialLog, nodeCommand: [o.ipBinary, 'netns', 'exec', o.switchNs, VM_NODE, envFile] };
}

/**
 * The address the VM lab's test image (tools/lab/test-image.sh) gives itself, without DHCP:
 * IPv4 link-local from the MAC's last two bytes, `169.254.<1 + b5 % 254>.<1 + b6 % 254>/16`.
 */
export function testImageAddress(mac: string): string {
  const bytes = mac.split(':').map((b) => Number.parseInt(b, 16));
  const [b5 = 0, b6 = 0] = bytes.slice(4);
  return `169.254.${1 + (b5 % 254)}.${1 + (b6 % 254)}/16`;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

async function ip(args: string[]): Promise<void> {
  const result = await execa('ip', args, { reject: false, stdin: 'ignore' });
  if (result.exitCode !== 0) throw new Error(`ip ${args.join(' ')}: ${String(result.stderr).trim()}`);
}
