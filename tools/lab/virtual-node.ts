/**
 * A virtual bare-metal machine, from power-on to power-off: what a simulated BMC (bmc-lab.ts) runs,
 * inside the node's network namespace (virtual-lab.ts starts it as `ip netns exec NS node
 * virtual-node.ts CONFIG BMC_DIR`). It boots by `<BMC_DIR>/boot`, as firmware would:
 *
 * - `pxe`: DHCP on eth0 posing as iPXE (user class `iPXE`, option 175), the leased address, the
 *   chain script named by the DHCP boot file over HTTP, its `chain ipxe/${mac:hexhyp}.ipxe`, and from
 *   the node's own script the kernel line's `ingot.*` parameters; then "boots the bootstrap image":
 *   runs the agent (as its child, in its process group) with `--controller`, the token and its disk.
 *   DHCP and HTTP are tried a few times; then it says `no bootable device` and idles, as a PXE ROM
 *   that gave up does.
 * - anything else (`default` = disk): reads its disk; a complete lab image (lab-image.ts) "boots":
 *   it configures `projectIp` on eth0 and logs `booted <marker> from disk` (the kernel answers
 *   pings). Otherwise it logs `no bootable disk` and idles without an address.
 *
 * It stays alive until powered off, because the BMC reports power on while its PID lives. SIGTERM
 * (ACPI soft off) ends it at once, agent included. The agent's reboot and power-off commands are
 * signals to this process: SIGUSR1 boots again (by the boot device then set), SIGUSR2 powers off.
 * Every step goes to stdout with a timestamp (the BMC writes it to `<BMC_DIR>/node.log`).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readLabImage } from './lab-image.ts';
import type { VirtualNodeConfig } from './virtual-lab.ts';

/** DHCP: this many rounds of udhcpc, each sending up to 3 discovers a second apart. */
const DHCP_ROUNDS = 3;
const HTTP_TRIES = 3;
const HTTP_TIMEOUT_MS = 5_000;
const RETRY_PAUSE_MS = 1_000;
/** A soft-off gives the agent this long before it is killed. */
const SHUTDOWN_GRACE_MS = 1_000;
/** Chains followed before giving up (iPXE has no limit; a loop here would be a controller bug). */
const MAX_CHAINS = 4;

/**
 * Every child dies with this process, however it ends: a hard power-off kills the node's process
 * group, but a child must not outlive its machine even when only this process is killed.
 */
const PARENT_DEATH = ['--pdeathsig', 'KILL', '--'];

const [configFile, bmcDir] = process.argv.slice(2);
if (!configFile || !bmcDir) {
  process.stderr.write('usage: virtual-node.ts CONFIG_JSON BMC_DIR\n');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configFile, 'utf8')) as VirtualNodeConfig;

let children = new Set<ChildProcess>();
/** Bumped by every reboot: a boot that sees a newer generation stops where it is. */
let generation = 0;

function log(message: string): void {
  process.stdout.write(`${new Date().toISOString()} ${config.name}: ${message}\n`);
}

// The machine is on while this process lives.
setInterval(() => undefined, 1 << 30);

process.on('SIGTERM', () => void shutDown('ACPI shutdown'));
process.on('SIGUSR2', () => void shutDown('power off requested'));
process.on('SIGUSR1', () => {
  log('reboot requested');
  killChildren('SIGKILL');
  void boot();
});

log(`power on (pid ${process.pid})`);
void boot();

async function shutDown(why: string): Promise<void> {
  log(`${why}: shutting down`);
  generation++;
  const running = [...children];
  killChildren('SIGTERM');
  await Promise.race([
    Promise.all(running.map((c) => new Promise((r) => (c.exitCode === null ? c.once('exit', r) : r(null))))),
    sleep(SHUTDOWN_GRACE_MS),
  ]);
  killChildren('SIGKILL');
  log('powered off');
  process.exit(0);
}

function killChildren(signal: NodeJS.Signals): void {
  for (const child of children) child.kill(signal);
  if (signal === 'SIGKILL') children = new Set();
}

async function boot(): Promise<void> {
  const mine = ++generation;
  const device = bootDevice();
  log(`booting from ${device === 'pxe' ? 'the network (PXE)' : `${device} (disk)`}`);
  // A machine coming up has no address: forget whatever the last boot configured.
  await run(['ip', 'addr', 'flush', 'dev', 'eth0']);
  await run(['ip', 'link', 'set', 'dev', 'eth0', 'up']);
  try {
    if (device === 'pxe') await pxeBoot(mine);
    else await diskBoot(mine);
  } catch (err) {
    if (mine === generation) log(`boot failed: ${(err as Error).message}; idle`);
  }
}

function bootDevice(): string {
  try {
    return readFileSync(join(bmcDir as string, 'boot'), 'utf8').trim() || 'none';
  } catch {
    return 'none';
  }
}

async function diskBoot(mine: number): Promise<void> {
  const image = await readLabImage(config.disk);
  if (mine !== generation) return;
  if (!image.valid) {
    log(`no bootable disk on ${config.disk} (${image.reason}); idle`);
    return;
  }
  await run(['ip', 'addr', 'add', config.projectIp, 'dev', 'eth0']);
  log(`booted ${image.marker} from disk (${image.sizeBytes} bytes verified); eth0 ${config.projectIp}`);
}

async function pxeBoot(mine: number): Promise<void> {
  log(`PXE: DHCP on eth0 (${config.mac}) as iPXE`);
  const lease = await dhcp(mine);
  if (mine !== generation) return;
  if (!lease) {
    log('PXE: no DHCP offer; no bootable device; idle');
    return;
  }
  log(
    `PXE: leased ${lease.ip}/${lease.mask} from ${lease.serverid}, boot file ${lease.bootFile || '(none)'}`,
  );
  await run(['ip', 'addr', 'add', `${lease.ip}/${lease.mask}`, 'dev', 'eth0']);
  if (!/^https?:\/\//.test(lease.bootFile)) {
    log('PXE: the boot file is not an HTTP URL (not treated as iPXE?); no bootable device; idle');
    return;
  }
  let url = lease.bootFile;
  let kernelLine: string | undefined;
  let fallback: string[] | undefined;
  for (let depth = 0; depth < MAX_CHAINS && !kernelLine; depth++) {
    const script = await httpGet(url, mine);
    if (mine !== generation) return;
    if (script === undefined) {
      // iPXE runs what follows `|| goto LABEL` when a chain fails.
      if (fallback) runScript(fallback.join('\n'), url);
      log(`iPXE: could not boot ${url}; no bootable device; idle`);
      return;
    }
    const next = runScript(script, url);
    if (next.kind === 'chain') {
      url = next.url;
      fallback = next.fallback;
    } else if (next.kind === 'boot') kernelLine = next.kernel;
    else {
      log(`iPXE: ${url} ended without booting (${next.why}); no bootable device; idle`);
      return;
    }
  }
  if (!kernelLine) {
    log('iPXE: too many chains; idle');
    return;
  }
  const params = new Map<string, string>();
  for (const word of kernelLine.split(/\s+/)) {
    const m = /^(ingot\.[a-z_.-]+)=(.*)$/.exec(word);
    if (m?.[1]) params.set(m[1], m[2] ?? '');
  }
  const controller = params.get('ingot.controller');
  const token = params.get('ingot.token');
  if (!controller || !token) {
    log('iPXE: the kernel line has no ingot.controller= or ingot.token=; idle');
    return;
  }
  const shown = [...params].map(([k, v]) => (k === 'ingot.token' ? `${k}=…` : `${k}=${v}`)).join(' ');
  log(`booting the bootstrap image: ${shown}`);
  startAgent(controller, token);
}

type ScriptResult =
  | { kind: 'chain'; url: string; fallback?: string[] }
  | { kind: 'boot'; kernel: string }
  | { kind: 'exit'; why: string };

/** The few iPXE commands Ingot's scripts use: chain (with `|| goto`), kernel, initrd, boot, echo, exit. */
function runScript(script: string, base: string): ScriptResult {
  const lines = script
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  let kernel: string | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = expand(lines[i] as string);
    const [command = '', ...rest] = line.split(/\s+/);
    const orGoto = /\|\|\s*goto\s+(\S+)\s*$/.exec(line)?.[1];
    const args = rest
      .join(' ')
      .replace(/\|\|.*$/, '')
      .trim()
      .split(/\s+/)
      .filter(Boolean);
    switch (command) {
      case 'chain': {
        const url = new URL(args[0] ?? '', base).toString();
        const at = orGoto ? lines.indexOf(`:${orGoto}`) : -1;
        log(`iPXE: chain ${url}`);
        return { kind: 'chain', url, ...(at >= 0 ? { fallback: lines.slice(at + 1) } : {}) };
      }
      case 'kernel':
        log(`iPXE: kernel ${args[0]} (not fetched: a virtual node runs the agent directly)`);
        kernel = args.slice(1).join(' ');
        break;
      case 'initrd':
        log(`iPXE: initrd ${args.at(-1)} (not fetched)`);
        break;
      case 'boot':
        if (kernel === undefined) return { kind: 'exit', why: 'boot without a kernel' };
        return { kind: 'boot', kernel };
      case 'echo':
        log(`iPXE: ${args.join(' ')}`);
        break;
      case 'exit':
        return { kind: 'exit', why: `exit ${args[0] ?? '0'}` };
      default:
        if (!command.startsWith(':')) log(`iPXE: ignoring ${command}`);
    }
  }
  return { kind: 'exit', why: 'end of script' };
}

/** iPXE settings in a script line: `${mac}`, `${net0/mac}` and their `:hexhyp` forms. */
function expand(line: string): string {
  const mac = config.mac.toLowerCase();
  return line.replace(/\$\{(?:net0\/)?mac(:hexhyp)?\}/g, (_all, hexhyp?: string) =>
    hexhyp ? mac.replace(/:/g, '-') : mac,
  );
}

/** GET with retries on network errors and 5xx (as iPXE's firmware would, a few times); a 4xx fails at once. */
async function httpGet(url: string, mine: number): Promise<string | undefined> {
  for (let attempt = 1; attempt <= HTTP_TRIES && mine === generation; attempt++) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
      const body = await res.text();
      if (res.ok) {
        log(`HTTP ${url}: ${res.status}, ${body.length} bytes`);
        return body;
      }
      log(`HTTP ${url}: ${res.status}`);
      if (res.status < 500) return undefined;
    } catch (err) {
      log(`HTTP ${url}: ${(err as Error).message} (try ${attempt} of ${HTTP_TRIES})`);
    }
    await sleep(RETRY_PAUSE_MS);
  }
  return undefined;
}

interface Lease {
  ip: string;
  mask: string;
  serverid: string;
  bootFile: string;
}

async function dhcp(mine: number): Promise<Lease | undefined> {
  // udhcpc calls this script with the lease in its environment; the node configures the address itself.
  const script = join(bmcDir as string, 'udhcpc-lease.sh');
  writeFileSync(
    script,
    [
      '#!/bin/sh',
      '[ "$1" = bound ] || exit 0',
      'echo "@lease ip=$ip"',
      'echo "@lease mask=$mask"',
      'echo "@lease serverid=$serverid"',
      'echo "@lease boot_file=$boot_file"',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  for (let round = 1; round <= DHCP_ROUNDS && mine === generation; round++) {
    const out = await run([
      'busybox',
      'udhcpc',
      '-i',
      'eth0',
      '-f',
      '-q',
      '-n',
      '-t',
      '3',
      '-T',
      '1',
      '-s',
      script,
      // What iPXE sends: its user class and its feature option (175), and PXE's vendor class.
      '-x',
      '0x4d:69505845',
      '-x',
      '0xaf:150101',
      '-V',
      'PXEClient:Arch:00000:UNDI:002001',
    ]);
    const fields = new Map<string, string>();
    for (const line of out.stdout.split('\n')) {
      const m = /^@lease (\w+)=(.*)$/.exec(line);
      if (m?.[1]) fields.set(m[1], m[2] ?? '');
    }
    const ip = fields.get('ip');
    if (ip) {
      return {
        ip,
        mask: fields.get('mask') || '24',
        serverid: fields.get('serverid') ?? '',
        bootFile: fields.get('boot_file') ?? '',
      };
    }
    log(`PXE: no DHCP answer (round ${round} of ${DHCP_ROUNDS})`);
  }
  return undefined;
}

function startAgent(controller: string, token: string): void {
  const args = [
    '--controller',
    controller,
    '--disk-allow',
    config.disk,
    '--mac',
    config.mac,
    '--reconnect-max-ms',
    '1000',
    '--reboot-command',
    `kill -USR1 ${process.pid}`,
    '--poweroff-command',
    `kill -USR2 ${process.pid}`,
  ];
  // The token goes through the environment, not argv (ps shows argv to everyone).
  const agent = spawn('setpriv', [...PARENT_DEATH, config.agentBinary, ...args], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, INGOT_AGENT_TOKEN: token },
  });
  children.add(agent);
  log(`agent started (pid ${agent.pid}): ${config.agentBinary} ${args.join(' ')}`);
  agent.once('error', (err) => log(`agent failed to start: ${err.message}; idle`));
  agent.once('exit', (code, signal) => {
    children.delete(agent);
    log(`agent exited (${signal ?? `code ${code}`}); idle`);
  });
}

/** Runs a command as a child (so that power-off kills it with this process group); never rejects. */
function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('setpriv', [...PARENT_DEATH, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (t: string) => {
      stdout += t;
    });
    child.stderr?.setEncoding('utf8').on('data', (t: string) => {
      stderr += t;
    });
    child.once('error', (err) => {
      children.delete(child);
      resolve({ code: -1, stdout, stderr: err.message });
    });
    child.once('close', (code) => {
      children.delete(child);
      if (code !== 0 && stderr.trim())
        log(`${argv.slice(0, 3).join(' ')}: ${stderr.trim().split('\n').at(-1)}`);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
