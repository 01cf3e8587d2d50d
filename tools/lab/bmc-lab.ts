/**
 * Simulated BMCs for tests, benchmarks and the demo: one OpenIPMI `ipmi_sim` per BMC on 127.0.0.1
 * and its own UDP port, each with its own credentials, and a chassis_control hook
 * (bmc-hook.sh) whose power on/off starts and stops a process: the BMC's "virtual node".
 *
 *   await using lab = await startBmcLab({ count: 3 });
 *   lab.bmcs[0].address  // '127.0.0.1:40123', user lab.bmcs[0].username, password lab.bmcs[0].password
 *   lab.bmcs[0].nodePid() // the virtual node's PID while it is powered on, else undefined
 *
 * Everything started is stopped by PID in `stop()` (also on process exit), never by name.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { chmodSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isLive, killQuietly } from './processes.ts';

const HOOK = fileURLToPath(new URL('./bmc-hook.sh', import.meta.url));
const VIRTUAL_NODE = fileURLToPath(new URL('./virtual-node.sh', import.meta.url));
/** How long a simulator gets to answer its first ping: a safety net (it takes ≈ 25 ms). */
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;

export interface BmcSpec {
  /** @default `bmc<i>` */
  name?: string;
  /** @default `admin` */
  username?: string;
  /** @default random, 16 letters and digits */
  password?: string;
  /** Program (and arguments) the BMC runs as its node; gets the BMC directory as its last argument. */
  nodeCommand?: string[];
  /** The node's "OS" ignores the ACPI power button (soft off never completes). */
  ignoreSoftOff?: boolean;
}

export interface BmcLabOptions {
  /** Number of BMCs with default settings, when `bmcs` is not given. */
  count?: number;
  bmcs?: BmcSpec[];
  /** Parent directory of the lab's files. @default a new directory under the system temp dir */
  dir?: string;
}

/** One simulated BMC and the machine behind it. */
export class SimBmc {
  readonly name: string;
  readonly host = '127.0.0.1';
  readonly port: number;
  readonly username: string;
  readonly password: string;
  /** Holds lan.conf, the hook's log, node.pid, boot, node.log. */
  readonly dir: string;
  readonly #sim: ChildProcess;
  #exited = false;

  constructor(
    spec: Required<Omit<BmcSpec, 'nodeCommand' | 'ignoreSoftOff'>>,
    port: number,
    dir: string,
    sim: ChildProcess,
  ) {
    this.name = spec.name;
    this.username = spec.username;
    this.password = spec.password;
    this.port = port;
    this.dir = dir;
    this.#sim = sim;
    sim.once('exit', () => {
      this.#exited = true;
    });
  }

  /** `host:port`, as a node's bmc_address. */
  get address(): string {
    return `${this.host}:${this.port}`;
  }

  /** PID of the running ipmi_sim. */
  get simPid(): number {
    return this.#sim.pid ?? -1;
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** The virtual node's PID while the machine is on (zombies count as off). */
  nodePid(): number | undefined {
    let pid: number;
    try {
      pid = Number(readFileSync(join(this.dir, 'node.pid'), 'utf8').trim());
    } catch {
      return undefined;
    }
    return isLive(pid) ? pid : undefined;
  }

  /** The boot device the BMC last stored (`pxe`, `default` = disk, `none`, …). */
  bootDevice(): string {
    try {
      return readFileSync(join(this.dir, 'boot'), 'utf8').trim();
    } catch {
      return 'none';
    }
  }

  /** Every chassis_control call ipmi_sim made, e.g. `set power 1`. */
  hookCalls(): string[] {
    try {
      return readFileSync(join(this.dir, 'hook.log'), 'utf8').split('\n').filter(Boolean);
    } catch {
      return [];
    }
  }

  /** The BMC stops answering (SIGSTOP), as a hung BMC does. */
  pause(): void {
    if (!this.#exited) process.kill(this.simPid, 'SIGSTOP');
  }

  resume(): void {
    if (!this.#exited) process.kill(this.simPid, 'SIGCONT');
  }

  /**
   * Fills the BMC's session table with half-open RMCP+ sessions (Open Session
   * Requests never followed by RAKP), as a crowd of clients does. ipmi_sim
   * holds 64; until it drops them (≈ 30 s) every login gets "insufficient
   * resources for session". Resolves once the BMC refused one.
   */
  async exhaustSessions(): Promise<void> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    try {
      const refused = new Promise<void>((resolve) =>
        socket.on('message', (reply) => {
          // RMCP (4) + session header (12) + length (2), then tag, status: 0x01 = insufficient resources.
          if (reply.length > 17 && reply[17] === 0x01) resolve();
        }),
      );
      for (let i = 0; i < 100; i++) {
        const payload = Buffer.alloc(32);
        payload.writeUInt8(0x04, 1); // requested privilege: administrator
        payload.writeUInt32LE(0x1a000000 + i, 4); // console session id
        payload.set([0x00, 0, 0, 8, 1, 0, 0, 0], 8); // authentication: RAKP-HMAC-SHA1
        payload.set([0x01, 0, 0, 8, 1, 0, 0, 0], 16); // integrity: HMAC-SHA1-96
        payload.set([0x02, 0, 0, 8, 1, 0, 0, 0], 24); // confidentiality: AES-CBC-128
        const header = Buffer.from('0600ff07061000000000000000002000', 'hex'); // RMCP+, Open Session Request
        socket.send(Buffer.concat([header, payload]), this.port, this.host);
      }
      await refused;
    } finally {
      socket.close();
    }
  }

  /** Hard-kills the virtual node (its whole process group). */
  killNode(): void {
    const pid = this.nodePid();
    if (pid === undefined) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      killQuietly(pid, 'SIGKILL');
    }
  }

  /** Stops the node and the simulator, by PID; idempotent. */
  async stop(): Promise<void> {
    this.killNode();
    if (this.#exited) return;
    const exited = new Promise<void>((resolve) => this.#sim.once('exit', () => resolve()));
    killQuietly(this.simPid, 'SIGCONT');
    killQuietly(this.simPid, 'SIGTERM');
    const timer = setTimeout(() => killQuietly(this.simPid, 'SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  /** Synchronous last resort for process exit handlers. */
  killNow(): void {
    this.killNode();
    if (!this.#exited) killQuietly(this.simPid, 'SIGKILL');
  }
}

export interface BmcLab extends AsyncDisposable {
  readonly dir: string;
  readonly bmcs: SimBmc[];
  stop(): Promise<void>;
}

/** Starts the BMCs in parallel; resolves once every one answers an RMCP ping. */
export async function startBmcLab(opts: BmcLabOptions): Promise<BmcLab> {
  const specs = opts.bmcs ?? Array.from({ length: opts.count ?? 1 }, () => ({}));
  const dir = mkdtempSync(join(opts.dir ?? tmpdir(), 'ingot-bmc-lab-'));
  const bmcs: SimBmc[] = [];
  const killAll = () => {
    for (const bmc of bmcs) bmc.killNow();
  };
  process.once('exit', killAll);
  const stop = async () => {
    process.removeListener('exit', killAll);
    await Promise.all(bmcs.map((b) => b.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all(
      specs.map(async (spec, i) => {
        bmcs.push(await startBmc(spec, i, dir));
      }),
    );
  } catch (err) {
    await stop();
    throw err;
  }
  bmcs.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
  return { dir, bmcs, stop, [Symbol.asyncDispose]: stop };
}

async function startBmc(spec: BmcSpec, index: number, labDir: string): Promise<SimBmc> {
  const full = {
    name: spec.name ?? `bmc${index}`,
    username: spec.username ?? 'admin',
    password: spec.password ?? randomBytes(12).toString('base64url').replace(/[-_]/g, 'x').slice(0, 16),
  };
  const dir = join(labDir, full.name);
  mkdirSync(join(dir, 'state'), { recursive: true });
  const node = spec.nodeCommand ?? [VIRTUAL_NODE];
  writeFileSync(join(dir, 'node.sh'), `#!/bin/sh\nexec ${node.map(shellQuote).join(' ')} "$@"\n`);
  chmodSync(join(dir, 'node.sh'), 0o755);
  if (spec.ignoreSoftOff) writeFileSync(join(dir, 'soft-off'), 'ignore\n');
  writeFileSync(
    join(dir, 'bmc.emu'),
    [
      'mc_setbmc 0x20',
      'mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02',
      'sel_enable 0x20 1000 0x0a',
      'mc_enable 0x20',
      '',
    ].join('\n'),
  );
  // The kernel picks a free port; another process may take it before ipmi_sim binds: retry then.
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freeUdpPort();
    writeFileSync(join(dir, 'lan.conf'), lanConf(full, port, dir));
    const log = openSync(join(dir, 'sim.log'), 'a');
    const sim = spawn(
      'ipmi_sim',
      ['-c', join(dir, 'lan.conf'), '-f', join(dir, 'bmc.emu'), '-s', join(dir, 'state'), '-n'],
      { stdio: ['ignore', log, log] },
    );
    const bmc = new SimBmc(full, port, dir, sim);
    try {
      await waitForPong(bmc);
      return bmc;
    } catch (err) {
      lastError = err;
      await bmc.stop();
    }
  }
  throw new Error(`ipmi_sim for ${full.name} did not start: ${String(lastError)}; see ${dir}/sim.log`);
}

function lanConf(
  bmc: { name: string; username: string; password: string },
  port: number,
  dir: string,
): string {
  const auths = 'none md2 md5 straight';
  return [
    `name "${bmc.name}"`,
    'set_working_mc 0x20',
    '  startlan 1',
    `    addr 127.0.0.1 ${port}`,
    '    priv_limit admin',
    ...['callback', 'user', 'operator', 'admin'].map((role) => `    allowed_auths_${role} ${auths}`),
    `    guid ${randomBytes(16).toString('hex')}`,
    '  endlan',
    `  chassis_control "${HOOK} ${dir}"`,
    `  user 2 true "${bmc.username}" "${bmc.password}" admin 10 ${auths}`,
    '',
  ].join('\n');
}

/** RMCP/ASF presence ping; resolves on the pong, rejects if the simulator exits or stays silent. */
async function waitForPong(bmc: SimBmc): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (bmc.exited) throw new Error('ipmi_sim exited');
    if (await rmcpPing(bmc.host, bmc.port, 100)) return;
  }
  throw new Error(`no RMCP pong within ${START_TIMEOUT_MS} ms`);
}

/** True when something at host:port answers an RMCP presence ping within `timeoutMs`. */
export function rmcpPing(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    const finish = (answered: boolean) => {
      clearTimeout(timer);
      socket.close();
      resolve(answered);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.once('message', () => finish(true));
    socket.once('error', () => finish(false));
    socket.send(Buffer.from('0600ff06000011be80000000', 'hex'), port, host);
  });
}

/** A UDP port nobody had bound a moment ago. */
export function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
