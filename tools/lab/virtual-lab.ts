/**
 * Virtual bare-metal nodes for Ingot's provisioning flow: a switch, BMCs, NICs and disks on one
 * machine, driven by the real controller through IPMI, DHCP/iPXE, the Linux-bridge switch driver
 * and the real agent.
 *
 *   await using lab = await startVirtualLab({ count: 2, agentBinary: 'build/ingot-agent' });
 *   lab.switchNs          // namespace with br-svc (.2, dnsmasq's interface) and br-proj
 *   lab.hostAddress       // the service subnet's .1, on a veth in the host namespace: listen here
 *   lab.nodes[0]          // { name, mac, serviceIp, switchPort: 'p0', disk: '/dev/loopN', ns, projectIp, bmc }
 *   const probe = await lab.addProbe('br-proj');
 *   await lab.netns.reaches(probe.ns, lab.nodes[0].projectIp.split('/')[0]);
 *
 * A node is a namespace whose `eth0` is plugged into switch port `p<i>` (on `br-svc` at first), a
 * loop device over a sparse file, and an ipmi_sim BMC that runs tools/lab/virtual-node.ts inside
 * the namespace on power-on (PXE: DHCP as iPXE, boot script, agent; disk: verify the lab image).
 *
 * With `vm`, each node is a QEMU virtual machine instead (vm-lab.ts): its NIC a tap `p<i>` in the
 * switch namespace, its disk a raw file (`/dev/vda` in the guest), PXE by QEMU's iPXE ROM, its serial
 * console in `logFile`; the same BMC starts, stops and resets QEMU. No node namespace, no loop device.
 *
 * Everything is removed by `stop()` (and, best effort, when the process exits): BMCs and nodes by
 * PID, loop devices by name, namespaces (and with them every interface, the host's veth included).
 * Needs root, iproute2, busybox, util-linux (losetup) and openipmi; with `vm`, qemu-system-x86 and
 * ipxe-qemu.
 */
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { type BmcLab, type SimBmc, startBmcLab } from './bmc-lab.ts';
import { NetnsLab } from './netns-lab.ts';
import { isLive } from './processes.ts';
import { createVmNode, testImageAddress, type VmOptions } from './vm-lab.ts';

const VIRTUAL_NODE = fileURLToPath(new URL('./virtual-node.ts', import.meta.url));
const REPO_NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
/** The service network's bridge in the switch namespace (the controller's `netboot.interface`). */
export const SERVICE_BRIDGE = 'br-svc';
/** The switch namespace's end of the veth to the host. */
const UPLINK = 'uplink';
/** Subnet blocks (one /24 for the service network, one per project network) taken by live labs. */
export const CLAIMS_DIR = '/run/ingot-lab/subnets';
/** Each lab takes 8 consecutive /24s: the service network and up to 7 project networks. */
const BLOCK = 8;
const MAX_NODES = 200;

/**
 * Where loop devices' backing files are listed (one `<file>` a line, in `<dir>/<lab id>`) so that a
 * harness can detach what a killed process left (test/support/sweep-loop-devices.sh). Set it with
 * INGOT_LOOP_REGISTRY; under test/support/run-tests.sh it defaults to `loop/` next to the netns registry.
 */
const LOOP_REGISTRY =
  process.env.INGOT_LOOP_REGISTRY ??
  (process.env.INGOT_NETNS_REGISTRY ? join(dirname(process.env.INGOT_NETNS_REGISTRY), 'loop') : undefined);

export interface VirtualLabOptions {
  /** Number of nodes, 1-200. */
  count: number;
  /** The agent executable the nodes run after a PXE boot (`make agent` builds build/ingot-agent). */
  agentBinary: string;
  /** Each node's disk. @default 64 */
  diskMiB?: number;
  /** Project networks: one bridge each in the switch namespace, 1-7. @default ['br-proj'] */
  projectNetworks?: string[];
  /** Parent directory of the lab's files. @default the system temp dir */
  dir?: string;
  /** QEMU virtual machines as nodes (vm-lab.ts), booting the bootstrap image and deployed disks. */
  vm?: VmOptions | boolean;
}

export interface ProjectNetwork {
  bridge: string;
  /** e.g. `10.123.9.0/24` */
  subnet: string;
}

export interface VirtualNode {
  /** `node<i>`; also its BMC's name. */
  name: string;
  /** Lower-case colon form, locally administered (52:54:00:…), unique per lab. */
  mac: string;
  /** Its fixed address on the service network (the DHCP host entry's), `.10+i`. */
  serviceIp: string;
  /** Its port in the switch namespace, `p<i>`: the Linux-bridge driver moves it between bridges. */
  switchPort: string;
  /** Its disk as the node sees it (its root disk to enrol), e.g. `/dev/loop3`; `/dev/vda` in a VM. */
  disk: string;
  /** Its disk on this host: the loop device, or a VM's raw file. */
  diskFile: string;
  /** Its namespace: `eth0` inside is its NIC. Empty for a VM (its NIC is a tap in the switch). */
  ns: string;
  /**
   * What the node configures on its NIC after booting a lab image, e.g. `10.123.9.10/24`; a VM's
   * test image takes an IPv4 link-local address from its MAC (vm-lab.ts), e.g. `169.254.7.3/16`.
   */
  projectIp: string;
  bmc: SimBmc;
  /** The virtual node's configuration (JSON for a process node, shell for a VM), read on every power-on. */
  configFile: string;
  /** What the node printed: `<bmc dir>/node.log`; a VM's serial console. */
  logFile: string;
  kind: 'process' | 'vm';
}

/** A namespace plugged into a project bridge, to show that a node is on that network. */
export interface Probe {
  ns: string;
  bridge: string;
  /** Without prefix length, e.g. `10.123.9.250`. */
  address: string;
}

/** What virtual-node.ts reads from its config file. */
export interface VirtualNodeConfig {
  name: string;
  ns: string;
  mac: string;
  disk: string;
  agentBinary: string;
  serviceIp: string;
  projectIp: string;
}

export interface VirtualLab extends AsyncDisposable {
  readonly id: string;
  readonly dir: string;
  readonly netns: NetnsLab;
  /** The switch namespace: `br-svc` and the project bridges, ports `p<i>`. */
  readonly switchNs: string;
  /** e.g. `10.123.8.0/24` */
  readonly serviceSubnet: string;
  /** The service subnet's .1, on `hostInterface` in the host namespace: where the controller listens. */
  readonly hostAddress: string;
  /** The host end of the veth to `br-svc`. */
  readonly hostInterface: string;
  /** `br-svc`'s own address (.2): dnsmasq serves there. */
  readonly switchAddress: string;
  readonly serviceBridge: string;
  readonly projectNetworks: ProjectNetwork[];
  readonly nodes: VirtualNode[];
  readonly bmcLab: BmcLab;
  /** Plugs a new namespace into a project bridge with an address of that network (.250 down). */
  addProbe(bridge: string): Promise<Probe>;
  /** The node's log so far (empty before its first power-on). */
  nodeLog(node: VirtualNode): string;
  /** Everything a client needs, as JSON (includes BMC passwords). */
  describe(): LabDescription;
  /** Idempotent; removes everything the lab started or created. */
  stop(): Promise<void>;
}

export interface LabDescription {
  id: string;
  dir: string;
  switchNs: string;
  serviceBridge: string;
  serviceSubnet: string;
  hostAddress: string;
  hostInterface: string;
  switchAddress: string;
  projectNetworks: ProjectNetwork[];
  namespaces: string[];
  loopFiles: string[];
  nodes: {
    name: string;
    kind: 'process' | 'vm';
    mac: string;
    serviceIp: string;
    switchPort: string;
    disk: string;
    diskFile: string;
    ns: string;
    projectIp: string;
    logFile: string;
    bmc: { address: string; username: string; password: string; dir: string; simPid: number };
  }[];
}

/** Starts the switch, the host veth, the nodes' namespaces, disks and BMCs. Nodes start powered off. */
export async function startVirtualLab(opts: VirtualLabOptions): Promise<VirtualLab> {
  const count = opts.count;
  if (!Number.isInteger(count) || count < 1 || count > MAX_NODES)
    throw new Error(`count must be a whole number from 1 to ${MAX_NODES}`);
  const projectBridges = opts.projectNetworks ?? ['br-proj'];
  if (projectBridges.length > BLOCK - 1) throw new Error(`at most ${BLOCK - 1} project networks`);
  for (const b of [SERVICE_BRIDGE, ...projectBridges]) {
    if (!/^[A-Za-z0-9_-]{1,15}$/.test(b)) throw new Error(`bad bridge name ${b}`);
  }
  if (new Set([SERVICE_BRIDGE, ...projectBridges]).size !== projectBridges.length + 1)
    throw new Error('bridge names must be unique and not br-svc');
  const diskBytes = (opts.diskMiB ?? 64) << 20;
  if (!existsSync(opts.agentBinary)) throw new Error(`no agent executable at ${opts.agentBinary}`);
  const agentBinary = resolve(opts.agentBinary);

  const dir = mkdtempSync(join(opts.dir ?? tmpdir(), 'ingot-vlab-'));
  chmodSync(dir, 0o755);
  const netns = await NetnsLab.create('vl');
  const id = netns.id;
  const loops: { file: string; device?: string }[] = [];
  let claim: string | undefined;
  /** The host end of the uplink veth, once created. */
  let hostLink: string | undefined;
  let bmcLab: BmcLab | undefined;
  let stopping: Promise<void> | undefined;

  const detachLoopsSync = () => {
    for (const loop of loops.splice(0)) {
      if (loop.device) {
        try {
          execFileSync('losetup', ['-d', loop.device], { stdio: 'ignore' });
        } catch {
          // Already detached.
        }
      }
    }
  };
  const onExit = () => {
    // A deleted namespace's interfaces go asynchronously: delete the host's end now.
    if (hostLink) {
      try {
        execFileSync('ip', ['link', 'del', hostLink], { stdio: 'ignore' });
      } catch {
        // Gone with its namespace already.
      }
    }
    detachLoopsSync();
    if (claim) releaseClaim(claim);
  };
  process.on('exit', onExit);

  const stop = () => {
    stopping ??= (async () => {
      process.removeListener('exit', onExit);
      await bmcLab?.stop();
      // The kernel frees a deleted namespace's interfaces later: remove the host's end first, so
      // that it is gone when stop() resolves.
      if (hostLink) await execa('ip', ['link', 'del', hostLink], { reject: false });
      await netns.destroy();
      for (const loop of loops.splice(0)) {
        if (loop.device) await execa('losetup', ['-d', loop.device], { reject: false });
      }
      if (claim) releaseClaim(claim);
      if (LOOP_REGISTRY) rmSync(join(LOOP_REGISTRY, id), { force: true });
      rmSync(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  try {
    const block = await claimSubnetBlock(id);
    claim = block.claimFile;
    const base = block.prefix; // `10.X.Y` with Y a multiple of 8
    const [a, b, c] = base.split('.').map(Number) as [number, number, number];
    const net = (k: number) => `${a}.${b}.${c + k}`;
    const serviceSubnet = `${net(0)}.0/24`;
    const hostAddress = `${net(0)}.1`;
    const switchAddress = `${net(0)}.2`;
    const projectNetworks = projectBridges.map((bridge, k) => ({ bridge, subnet: `${net(k + 1)}.0/24` }));

    const switchNs = await netns.namespace('sw');
    await netns.bridge(switchNs, SERVICE_BRIDGE, { cidr: `${switchAddress}/24` });
    // VM labs: an IPv6 address for dnsmasq's router advertisements (vm-lab.ts VM_NETBOOT_OPTIONS).
    if (opts.vm)
      await ip([
        '-n',
        switchNs,
        'addr',
        'add',
        `fd00:${c.toString(16)}:${b.toString(16)}::2/64`,
        'dev',
        SERVICE_BRIDGE,
        'nodad',
      ]);
    for (const p of projectNetworks) await netns.bridge(switchNs, p.bridge);

    // The host's end: created here, its peer moved into the switch namespace at once, so deleting
    // that namespace deletes both ends.
    const hostInterface = `${id}-h`;
    await ip(['link', 'add', hostInterface, 'type', 'veth', 'peer', 'name', UPLINK, 'netns', switchNs]);
    hostLink = hostInterface;
    await ip(['-n', switchNs, 'link', 'set', 'dev', UPLINK, 'master', SERVICE_BRIDGE]);
    await ip(['-n', switchNs, 'link', 'set', 'dev', UPLINK, 'up']);
    await ip(['addr', 'add', `${hostAddress}/24`, 'dev', hostInterface]);
    await ip(['link', 'set', 'dev', hostInterface, 'up']);
    const routes = await hostRoutes();
    const same = routes.filter((r) => r === serviceSubnet);
    if (same.length !== 1)
      throw new Error(`another interface on this host routes ${serviceSubnet}; cannot use it for the lab`);

    const macBase = `52:54:00:${id.slice(2, 4)}:${id.slice(4, 6)}`;
    mkdirSync(join(dir, 'disks'));
    mkdirSync(join(dir, 'nodes'));
    const nodeBin = existsSync(REPO_NODE) ? REPO_NODE : process.execPath;
    const ipBin = ipBinary();
    const vm = opts.vm === true ? {} : opts.vm || undefined;
    const specs = await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const name = `node${i}`;
        const mac = `${macBase}:${i.toString(16).padStart(2, '0')}`;
        const serviceIp = `${net(0)}.${10 + i}`;
        if (vm) {
          const files = await createVmNode({
            switchNs,
            bridge: SERVICE_BRIDGE,
            index: i,
            name,
            mac,
            dir,
            diskBytes,
            ipBinary: ipBin,
            vm,
          });
          const config = { name, ns: '', mac, disk: '/dev/vda', serviceIp, projectIp: testImageAddress(mac) };
          return {
            config,
            configFile: files.nodeCommand.at(-1) as string,
            diskFile: files.diskFile,
            serialLog: files.serialLog,
            nodeCommand: files.nodeCommand,
          };
        }
        const ns = await netns.namespace(`n${i}`);
        await netns.veth({ ns: switchNs, name: `p${i}`, master: SERVICE_BRIDGE }, { ns, name: 'eth0', mac });
        const file = join(dir, 'disks', `${name}.img`);
        writeFileSync(file, '');
        truncateSync(file, diskBytes);
        const loop: { file: string; device?: string } = { file };
        loops.push(loop);
        if (LOOP_REGISTRY) {
          mkdirSync(LOOP_REGISTRY, { recursive: true });
          appendFileSync(join(LOOP_REGISTRY, id), `${file}\n`);
        }
        loop.device = (await execa('losetup', ['--find', '--show', file])).stdout.trim();
        const config: VirtualNodeConfig = {
          name,
          ns,
          mac,
          disk: loop.device,
          agentBinary,
          serviceIp,
          projectIp: `${net(1)}.${10 + i}/24`,
        };
        const configFile = join(dir, 'nodes', `${name}.json`);
        writeFileSync(configFile, `${JSON.stringify(config, null, 2)}\n`);
        return {
          config,
          configFile,
          diskFile: loop.device,
          serialLog: undefined,
          nodeCommand: [ipBin, 'netns', 'exec', ns, nodeBin, VIRTUAL_NODE, configFile],
        };
      }),
    );
    bmcLab = await startBmcLab({
      dir,
      bmcs: specs.map(({ config, nodeCommand }) => ({ name: config.name, nodeCommand })),
    });
    const bmcs = bmcLab.bmcs;
    const nodes: VirtualNode[] = specs.map(({ config, configFile, diskFile, serialLog }, i) => {
      const bmc = bmcs.find((x) => x.name === config.name);
      if (!bmc) throw new Error(`no BMC for ${config.name}`);
      return {
        name: config.name,
        kind: vm ? 'vm' : 'process',
        mac: config.mac,
        serviceIp: config.serviceIp,
        switchPort: `p${i}`,
        disk: config.disk,
        diskFile,
        ns: config.ns,
        projectIp: config.projectIp,
        bmc,
        configFile,
        logFile: serialLog ?? join(bmc.dir, 'node.log'),
      };
    });

    const probes: Probe[] = [];
    const namespaces = [switchNs, ...nodes.map((n) => n.ns).filter(Boolean)];
    const lab: VirtualLab = {
      id,
      dir,
      netns,
      switchNs,
      serviceSubnet,
      hostAddress,
      hostInterface,
      switchAddress,
      serviceBridge: SERVICE_BRIDGE,
      projectNetworks,
      nodes,
      bmcLab,
      async addProbe(bridge) {
        const k = projectNetworks.findIndex((p) => p.bridge === bridge);
        if (k < 0) throw new Error(`${bridge} is not one of this lab's project networks`);
        const n = probes.length;
        if (n >= 40) throw new Error('at most 40 probes');
        const ns = await netns.namespace(`q${n}`);
        namespaces.push(ns);
        const address = `${net(k + 1)}.${250 - n}`;
        await netns.veth(
          { ns: switchNs, name: `q${n}`, master: bridge },
          { ns, name: 'eth0', cidr: `${address}/24` },
        );
        // VMs' test images are link-local (vm-lab.ts): 169.254.255.x is outside their range.
        if (vm) await ip(['-n', ns, 'addr', 'add', `169.254.255.${250 - n}/16`, 'dev', 'eth0']);
        const probe = { ns, bridge, address };
        probes.push(probe);
        return probe;
      },
      nodeLog(node) {
        try {
          return readFileSync(node.logFile, 'utf8');
        } catch {
          return '';
        }
      },
      describe() {
        return {
          id,
          dir,
          switchNs,
          serviceBridge: SERVICE_BRIDGE,
          serviceSubnet,
          hostAddress,
          hostInterface,
          switchAddress,
          projectNetworks,
          namespaces: [...namespaces],
          loopFiles: vm ? [] : specs.map((s) => join(dir, 'disks', `${s.config.name}.img`)),
          nodes: nodes.map((n) => ({
            name: n.name,
            kind: n.kind,
            mac: n.mac,
            serviceIp: n.serviceIp,
            switchPort: n.switchPort,
            disk: n.disk,
            diskFile: n.diskFile,
            ns: n.ns,
            projectIp: n.projectIp,
            logFile: n.logFile,
            bmc: {
              address: n.bmc.address,
              username: n.bmc.username,
              password: n.bmc.password,
              dir: n.bmc.dir,
              simPid: n.bmc.simPid,
            },
          })),
        };
      },
      stop,
      [Symbol.asyncDispose]: stop,
    };
    return lab;
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Takes a block of 8 /24s under 10/8 that no host route overlaps and no live lab holds: a file per
 * block under /run/ingot-lab/subnets, created exclusively, holding the owner's PID (a dead owner's
 * claim is taken over). Two labs starting at once can never pick the same block.
 */
async function claimSubnetBlock(id: string): Promise<{ prefix: string; claimFile: string }> {
  mkdirSync(CLAIMS_DIR, { recursive: true });
  const routes = await hostRoutes();
  for (let attempt = 0; attempt < 200; attempt++) {
    const prefix = `10.${randomInt(100, 250)}.${randomInt(0, 256 / BLOCK) * BLOCK}`;
    const cidr = `${prefix}.0/${24 - Math.log2(BLOCK)}`;
    if (routes.some((r) => overlaps(r, cidr))) continue;
    const file = join(CLAIMS_DIR, prefix);
    for (let take = 0; take < 2; take++) {
      try {
        const fd = openSync(file, 'wx', 0o644);
        writeSync(fd, `${process.pid} ${id}\n`);
        closeSync(fd);
        return { prefix, claimFile: file };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const owner = Number(readFileSync(file, 'utf8').split(' ')[0]);
        if (isLive(owner)) break;
        try {
          unlinkSync(file);
        } catch {
          // Someone else took it over first.
        }
      }
    }
  }
  throw new Error('no free 10.x.y.0/21 block for a lab: too many host routes or labs');
}

function releaseClaim(file: string): void {
  try {
    if (Number(readFileSync(file, 'utf8').split(' ')[0]) === process.pid) unlinkSync(file);
  } catch {
    // Gone already.
  }
}

/** Destinations of every IPv4 route of the host namespace, as CIDRs (default routes left out). */
async function hostRoutes(): Promise<string[]> {
  const out = await execa('ip', ['-j', '-4', 'route', 'show', 'table', 'all']);
  const routes = JSON.parse(out.stdout || '[]') as { dst?: string }[];
  return routes
    .map((r) => r.dst ?? '')
    .filter((d) => d && d !== 'default')
    .map((d) => (d.includes('/') ? d : `${d}/32`));
}

function overlaps(x: string, y: string): boolean {
  const parse = (cidr: string) => {
    const [addr = '', bits = '32'] = cidr.split('/');
    const n = addr.split('.').reduce((acc, o) => (acc << 8) + Number(o), 0) >>> 0;
    return { n, bits: Number(bits) };
  };
  const a = parse(x);
  const b = parse(y);
  const bits = Math.min(a.bits, b.bits);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (a.n & mask) === (b.n & mask);
}

function ipBinary(): string {
  for (const p of ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip']) if (existsSync(p)) return p;
  return 'ip';
}

async function ip(args: string[]): Promise<void> {
  const result = await execa('ip', args, { reject: false, stdin: 'ignore' });
  if (result.exitCode !== 0) throw new Error(`ip ${args.join(' ')}: ${String(result.stderr).trim()}`);
}
