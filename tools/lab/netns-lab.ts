/**
 * Network namespaces, bridges and veth pairs for tests, benchmarks and the lab: a switch without
 * 802.1Q (one bridge per network, STP off, forward delay 0) and nodes as namespaces plugged into
 * it. Every namespace gets this lab's unique prefix; `destroy()` deletes them, and with them every
 * interface and bridge inside. Nothing is created outside the lab's namespaces.
 *
 *   const lab = await NetnsLab.create('nw');         // namespaces named nw<6 hex>-<name>
 *   const sw = await lab.namespace('sw');
 *   await lab.bridge(sw, 'br-svc');
 *   const node = await lab.namespace('n1');
 *   await lab.veth({ ns: sw, name: 'p-n1', master: 'br-svc' }, { ns: node, name: 'eth0', cidr: '10.9.0.10/24' });
 *   await lab.exec(node, ['ping', '-c', '1', '10.9.0.1']);
 *   await lab.destroy();
 *
 * Needs root (CAP_NET_ADMIN), iproute2 and busybox (ping).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { killQuietly } from './processes.ts';

/**
 * When set (test/support/run-tests.sh sets it), every namespace created is also listed in
 * `<dir>/<lab id>`, so that the harness can remove what a killed test process left behind.
 */
const REGISTRY = process.env.INGOT_NETNS_REGISTRY;

/** Labs not yet destroyed: removed synchronously if the process exits without destroying them. */
const LIVE = new Set<NetnsLab>();
process.on('exit', () => {
  for (const lab of LIVE) lab.destroySync();
});

/** Linux interface and namespace names used here stay within IFNAMSIZ (15 characters). */
const MAX_NAME = 15;

export interface VethEnd {
  /** The namespace's full name, from `namespace()`. */
  ns: string;
  /** Interface name inside the namespace (at most 15 characters). */
  name: string;
  /** Attach to this bridge in the same namespace. */
  master?: string;
  /** Address to give the interface, e.g. `10.9.0.10/24`. */
  cidr?: string;
  /** MAC address, e.g. `52:54:00:00:00:01`. */
  mac?: string;
}

export class NetnsLab {
  /** `<prefix><6 hex>`: unique per run, so parallel runs and leftovers never collide. */
  readonly id: string;
  readonly #namespaces: string[] = [];

  private constructor(id: string) {
    this.id = id;
  }

  /** `prefix` is 1-4 characters; namespace names are `<prefix><6 hex>-<name>`. */
  static async create(prefix: string): Promise<NetnsLab> {
    if (!/^[a-z]{1,4}$/.test(prefix)) throw new Error('prefix must be 1-4 lower-case letters');
    return new NetnsLab(`${prefix}${randomBytes(3).toString('hex')}`);
  }

  /** Creates a namespace with loopback up and returns its full name. */
  async namespace(name: string): Promise<string> {
    const full = `${this.id}-${name}`;
    if (full.length > MAX_NAME)
      throw new Error(`namespace name ${full} is longer than ${MAX_NAME} characters`);
    if (REGISTRY) {
      mkdirSync(REGISTRY, { recursive: true });
      appendFileSync(join(REGISTRY, this.id), `${full}\n`);
    }
    await ip(['netns', 'add', full]);
    this.#namespaces.push(full);
    LIVE.add(this);
    await ip(['-n', full, 'link', 'set', 'lo', 'up']);
    return full;
  }

  /** A bridge as a switch's network: STP off and no forwarding delay, so a moved port forwards at once. */
  async bridge(ns: string, name: string, opts: { cidr?: string } = {}): Promise<void> {
    await ip(['-n', ns, 'link', 'add', name, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    if (opts.cidr) await ip(['-n', ns, 'addr', 'add', opts.cidr, 'dev', name]);
    await ip(['-n', ns, 'link', 'set', name, 'up']);
  }

  /** A veth pair with each end created directly in its namespace (never in the host's). */
  async veth(a: VethEnd, b: VethEnd): Promise<void> {
    for (const end of [a, b]) {
      if (end.name.length > MAX_NAME) throw new Error(`interface name ${end.name} is too long`);
    }
    await ip(['-n', a.ns, 'link', 'add', a.name, 'type', 'veth', 'peer', 'name', b.name, 'netns', b.ns]);
    for (const end of [a, b]) {
      if (end.mac) await ip(['-n', end.ns, 'link', 'set', 'dev', end.name, 'address', end.mac]);
      if (end.master) await ip(['-n', end.ns, 'link', 'set', 'dev', end.name, 'master', end.master]);
      if (end.cidr) await ip(['-n', end.ns, 'addr', 'add', end.cidr, 'dev', end.name]);
      await ip(['-n', end.ns, 'link', 'set', 'dev', end.name, 'up']);
    }
  }

  /** Runs a command inside a namespace; resolves with its output whatever the exit code. */
  async exec(
    ns: string,
    command: string[],
    opts: { timeoutMs?: number; input?: string; cwd?: string } = {},
  ): Promise<{ stdout: string; stderr: string; exitCode: number }> {
    const result = await execa('ip', ['netns', 'exec', ns, ...command], {
      reject: false,
      timeout: opts.timeoutMs ?? 30_000,
      ...(opts.input === undefined ? { stdin: 'ignore' as const } : { input: opts.input }),
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
    });
    return { stdout: String(result.stdout), stderr: String(result.stderr), exitCode: result.exitCode ?? -1 };
  }

  /** True when `ns` gets an answer from `address` (busybox ping: up to `tries` pings, one second each). */
  async reaches(ns: string, address: string, tries = 2): Promise<boolean> {
    for (let i = 0; i < tries; i++) {
      const r = await this.exec(ns, ['busybox', 'ping', '-q', '-c', '1', '-W', '1', address]);
      if (r.exitCode === 0) return true;
    }
    return false;
  }

  /**
   * Ends every process still running in the lab's namespaces (by PID, from `ip netns pids`), then
   * deletes the namespaces and so every interface in them. Safe to call twice.
   */
  async destroy(): Promise<void> {
    LIVE.delete(this);
    const namespaces = this.#namespaces.splice(0);
    for (const ns of namespaces) {
      const pids = await execa('ip', ['netns', 'pids', ns], { reject: false });
      for (const pid of String(pids.stdout).split(/\s+/).filter(Boolean)) killQuietly(Number(pid));
    }
    await Promise.all(namespaces.map((ns) => execa('ip', ['netns', 'del', ns], { reject: false })));
  }

  /** `destroy()` for a process that is exiting: synchronous, best effort. */
  destroySync(): void {
    LIVE.delete(this);
    for (const ns of this.#namespaces.splice(0)) {
      try {
        const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
        for (const pid of pids.split(/\s+/).filter(Boolean)) killQuietly(Number(pid));
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // Already gone, or not ours to delete any more.
      }
    }
  }
}

async function ip(args: string[]): Promise<void> {
  const result = await execa('ip', args, { reject: false, stdin: 'ignore' });
  if (result.exitCode !== 0) throw new Error(`ip ${args.join(' ')}: ${String(result.stderr).trim()}`);
}
