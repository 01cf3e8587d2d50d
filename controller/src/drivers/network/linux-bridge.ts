import { execa } from 'execa';
import type { Client } from 'ssh2';
import type { FieldViolation } from '../../domain/errors.ts';
import { isInterfaceName } from '../../domain/network.ts';
import {
  PortReadbackError,
  SwitchCommandError,
  SwitchPortNotFoundError,
  SwitchProtocolError,
  SwitchTimeoutError,
  SwitchUnreachableError,
} from './errors.ts';
import {
  type DriverCallOptions,
  intOption,
  type NetworkDriver,
  type PortChange,
  type PortChangeOutcome,
  type PortStatus,
  type SwitchTarget,
  unknownOptions,
} from './network-driver.ts';
import { connectSsh } from './ssh.ts';

/** SSH's port when a Linux-bridge switch's address names none. */
export const SSH_PORT = 22;

/** The Linux-bridge driver's `driver_options`. */
export interface LinuxBridgeOptions {
  /** `ssh` (the default): run `ip` on the host over SSH; `local`: on the controller's own host. */
  transport: 'ssh' | 'local';
  /** Run `ip -n <netns>`: the bridges live in that network namespace (labs, tests). */
  netns: string;
  /** Prefix `sudo -n` when the SSH user is not root. @default false */
  sudo: boolean;
  /** Per command. @default 10000 ms */
  timeoutMs: number;
}

const KNOWN = ['transport', 'netns', 'sudo', 'timeout_ms'] as const;

export function linuxBridgeOptions(
  options: Readonly<Record<string, string>>,
  violations?: FieldViolation[],
): LinuxBridgeOptions {
  const transport = options.transport ?? 'ssh';
  if (transport !== 'ssh' && transport !== 'local') {
    violations?.push({ field: 'switch.driver_options.transport', description: 'must be ssh or local' });
  }
  const netns = options.netns ?? '';
  if (netns && !/^[A-Za-z0-9_.-]{1,64}$/.test(netns)) {
    violations?.push({
      field: 'switch.driver_options.netns',
      description: 'must be a network namespace name (letters, digits, _ . -)',
    });
  }
  const sudo = options.sudo ?? 'false';
  if (sudo !== 'true' && sudo !== 'false') {
    violations?.push({ field: 'switch.driver_options.sudo', description: 'must be true or false' });
  }
  return {
    transport: transport === 'local' ? 'local' : 'ssh',
    netns,
    sudo: sudo === 'true',
    timeoutMs: intOption(options, 'timeout_ms', { min: 100, max: 600_000 }, violations) ?? 10_000,
  };
}

/** One `ip` run: its output whatever the exit code. */
interface IpResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Where `ip` runs: this host, or the switch host over one SSH connection. */
interface IpRunner {
  ip(args: readonly string[], opts?: { input?: string }): Promise<IpResult>;
  close(): void;
}

/** One link of `ip -j -d link show`. */
interface IpLink {
  ifname: string;
  master?: string;
  operstate?: string;
  linkinfo?: { info_kind?: string };
}

/**
 * A Linux host as a switch: a network is a bridge, a port is an interface
 * (veth or tap), and moving a port is `ip link set dev PORT master BRIDGE`.
 * A batch is one `ip -batch`; if it stops half-way, or a port reads back on
 * the wrong bridge, the ports already moved are put back where they were.
 * Runs `ip` locally or over SSH, optionally in a network namespace.
 */
export class LinuxBridgeDriver implements NetworkDriver {
  readonly name = 'linux-bridge';

  validateOptions(options: Readonly<Record<string, string>>): FieldViolation[] {
    const violations = unknownOptions(options, KNOWN, this.name);
    linuxBridgeOptions(options, violations);
    return violations;
  }

  async applyPortChanges(
    sw: SwitchTarget,
    changes: readonly PortChange[],
    opts: DriverCallOptions = {},
  ): Promise<PortChangeOutcome[]> {
    if (changes.length === 0) return [];
    for (const c of changes) {
      if (!c.network.bridge) {
        throw new SwitchCommandError({
          switchName: sw.name,
          command: 'ip link set',
          switchMessage: `network ${c.network.name} has no bridge; give it one to use it on Linux-bridge switches`,
        });
      }
      checkName(sw, c.port);
      checkName(sw, c.network.bridge);
    }
    const runner = await this.#runner(sw, opts);
    try {
      const before = await listLinks(sw, runner);
      for (const c of changes) {
        if (!before.has(c.port)) {
          throw new SwitchPortNotFoundError({
            switchName: sw.name,
            port: c.port,
            switchMessage: 'no such interface',
          });
        }
        if (before.get(c.network.bridge)?.linkinfo?.info_kind !== 'bridge') {
          throw new SwitchCommandError({
            switchName: sw.name,
            command: `ip link set dev ${c.port} master ${c.network.bridge}`,
            switchMessage: `bridge ${c.network.bridge} of network ${c.network.name} does not exist`,
          });
        }
      }
      const needed = changes.filter((c) => before.get(c.port)?.master !== c.network.bridge);
      if (needed.length > 0) {
        const undo = () =>
          runner.ip(['-batch', '-'], {
            input: needed
              .map((c) => {
                const master = before.get(c.port)?.master;
                return master
                  ? `link set dev ${c.port} master ${master}\n`
                  : `link set dev ${c.port} nomaster\n`;
              })
              .join(''),
          });
        const batch = needed.map((c) => `link set dev ${c.port} master ${c.network.bridge}\n`).join('');
        const result = await runner.ip(['-batch', '-'], { input: batch });
        if (result.exitCode !== 0) {
          await undo().catch(() => undefined);
          throw new SwitchCommandError({
            switchName: sw.name,
            command: 'ip -batch -',
            switchMessage: result.stderr.trim() || `exit code ${result.exitCode}`,
          });
        }
        const after = await listLinks(sw, runner);
        for (const c of needed) {
          const master = after.get(c.port)?.master;
          if (master !== c.network.bridge) {
            await undo().catch(() => undefined);
            throw new PortReadbackError({
              switchName: sw.name,
              port: c.port,
              wanted: `on bridge ${c.network.bridge}`,
              got: master ? `on bridge ${master}` : 'on no bridge',
            });
          }
        }
      }
      const changed = new Set(needed.map((c) => c.port));
      return changes.map((c) => ({ port: c.port, changed: changed.has(c.port) }));
    } finally {
      runner.close();
    }
  }

  async portStatus(sw: SwitchTarget, port: string, opts: DriverCallOptions = {}): Promise<PortStatus> {
    checkName(sw, port);
    const runner = await this.#runner(sw, opts);
    try {
      const link = (await listLinks(sw, runner)).get(port);
      if (!link)
        throw new SwitchPortNotFoundError({ switchName: sw.name, port, switchMessage: 'no such interface' });
      const state = (link.operstate ?? '').toLowerCase();
      return {
        port,
        mode: '',
        vlanIds: [],
        bridge: link.master ?? '',
        link: state === 'up' ? 'up' : state === 'down' || state === 'lowerlayerdown' ? 'down' : '',
      };
    } finally {
      runner.close();
    }
  }

  async #runner(sw: SwitchTarget, opts: DriverCallOptions): Promise<IpRunner> {
    const o = linuxBridgeOptions(sw.options);
    const prefix = [...(o.sudo ? ['sudo', '-n'] : []), 'ip', ...(o.netns ? ['-n', o.netns] : [])];
    if (o.transport === 'local') return localRunner(sw, prefix, o.timeoutMs, opts.signal);
    const ssh = await connectSsh({
      switchName: sw.name,
      host: sw.host,
      port: sw.port ?? SSH_PORT,
      username: sw.username,
      password: sw.password,
      privateKey: sw.privateKey,
      hostKeyFingerprint: sw.hostKeyFingerprint,
      ...(opts.onHostKey ? { onHostKey: opts.onHostKey } : {}),
      timeoutMs: o.timeoutMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    return sshRunner(sw, ssh, prefix, o.timeoutMs);
  }
}

/** Names reach `ip -batch` input and remote shells: only interface-name characters pass. */
function checkName(sw: SwitchTarget, name: string): void {
  if (!isInterfaceName(name)) {
    throw new SwitchCommandError({
      switchName: sw.name,
      command: 'ip link',
      switchMessage: `"${name}" is not a Linux interface name`,
    });
  }
}

async function listLinks(sw: SwitchTarget, runner: IpRunner): Promise<Map<string, IpLink>> {
  const result = await runner.ip(['-j', '-d', 'link', 'show']);
  if (result.exitCode !== 0) {
    throw new SwitchCommandError({
      switchName: sw.name,
      command: 'ip -j -d link show',
      switchMessage: result.stderr.trim() || `exit code ${result.exitCode}`,
    });
  }
  let links: IpLink[];
  try {
    links = JSON.parse(result.stdout) as IpLink[];
  } catch (err) {
    throw new SwitchProtocolError({
      switchName: sw.name,
      switchMessage: `ip -j output: ${(err as Error).message}`,
    });
  }
  return new Map(links.map((l) => [l.ifname, l]));
}

function localRunner(
  sw: SwitchTarget,
  prefix: readonly string[],
  timeoutMs: number,
  signal: AbortSignal | undefined,
): IpRunner {
  const [bin = 'ip', ...head] = prefix;
  return {
    async ip(args, opts = {}) {
      const result = await execa(bin, [...head, ...args], {
        env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C', LC_ALL: 'C' },
        extendEnv: false,
        ...(opts.input === undefined ? { stdin: 'ignore' as const } : { input: opts.input }),
        reject: false,
        timeout: timeoutMs,
        forceKillAfterDelay: 1_000,
        cancelSignal: signal,
      });
      if (result.code === 'ENOENT') {
        throw new SwitchCommandError({
          switchName: sw.name,
          command: bin,
          switchMessage: `${bin} is not installed on the controller host (Debian package iproute2)`,
        });
      }
      if (result.isCanceled)
        throw new SwitchUnreachableError({ switchName: sw.name, switchMessage: 'cancelled' });
      if (result.timedOut) {
        throw new SwitchTimeoutError({
          switchName: sw.name,
          switchMessage: 'ip hung',
          step: 'ip',
          timeoutMs,
        });
      }
      return {
        stdout: String(result.stdout ?? ''),
        stderr: String(result.stderr ?? ''),
        exitCode: result.exitCode ?? 1,
      };
    },
    close() {},
  };
}

/** Single quotes for a POSIX shell; names are already restricted, this is defence in depth. */
const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

function sshRunner(sw: SwitchTarget, ssh: Client, prefix: readonly string[], timeoutMs: number): IpRunner {
  return {
    ip(args, opts = {}) {
      const command = [...prefix, ...args].map(quote).join(' ');
      return new Promise<IpResult>((resolve, reject) => {
        const timer = setTimeout(() => {
          ssh.destroy();
          reject(
            new SwitchTimeoutError({ switchName: sw.name, switchMessage: 'ip hung', step: 'ip', timeoutMs }),
          );
        }, timeoutMs);
        ssh.exec(command, (err, stream) => {
          if (err) {
            clearTimeout(timer);
            reject(
              new SwitchUnreachableError({ switchName: sw.name, switchMessage: err.message, cause: err }),
            );
            return;
          }
          let stdout = '';
          let stderr = '';
          let exitCode = 1;
          stream.on('data', (d: Buffer) => {
            stdout += d.toString('utf8');
          });
          stream.stderr.on('data', (d: Buffer) => {
            stderr += d.toString('utf8');
          });
          stream.on('exit', (code: number | null) => {
            exitCode = code ?? 1;
          });
          stream.on('close', () => {
            clearTimeout(timer);
            resolve({ stdout, stderr, exitCode });
          });
          stream.end(opts.input ?? '');
        });
      });
    },
    close() {
      ssh.end();
    },
  };
}
