/**
 * `ingot-lab`: a virtual bare-metal lab (virtual-lab.ts) for the demo, manual trials and benchmarks,
 * kept by a background supervisor process.
 *
 *   ingot-lab up N [--vm [--kvm]] [--state FILE] [--agent PATH] [--disk-mib MIB] [--project-network BRIDGE]…
 *   ingot-lab status [--state FILE]
 *   ingot-lab down [--state FILE]
 *
 * `up` starts the supervisor (detached, its own session; output in `<state>.log`) and returns once
 * the lab is up: the supervisor writes the lab's description — nodes with their BMC address,
 * username and password, MACs, service IPs, switch ports, disks; the switch namespace, subnets, host
 * address — and its own PID to the state file (mode 0600: it holds BMC passwords; default
 * build/lab/lab.json). `down` stops the supervisor by that PID and waits until everything is
 * removed; if the supervisor is gone or does not stop, it removes what the state file lists itself.
 * `--vm`: the nodes are QEMU virtual machines (vm-lab.ts) that PXE-boot the controller's bootstrap
 * image; each one's serial console is its `logFile`. They run under QEMU's TCG; `--kvm` uses KVM
 * instead, only where /dev/kvm runs stock guests (it hangs them on some paravirtual hosts).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { isLive, killQuietly } from './processes.ts';
import { CLAIMS_DIR, type LabDescription, startVirtualLab } from './virtual-lab.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DEFAULT_STATE = join(REPO_ROOT, 'build/lab/lab.json');
const DEFAULT_AGENT = join(REPO_ROOT, 'build/ingot-agent');
/** How long `up` waits for the lab (≈ 1 s for a few nodes). */
const UP_TIMEOUT_MS = 120_000;
/** How long `down` lets the supervisor stop everything before it kills it and sweeps. */
const DOWN_TIMEOUT_MS = 30_000;

interface LabState extends LabDescription {
  supervisorPid: number;
  startTime: string;
  agentBinary: string;
}

const USAGE = `usage: ingot-lab up N [--vm [--kvm]] [--state FILE] [--agent PATH] [--disk-mib MIB] [--project-network BRIDGE]...
       ingot-lab status [--state FILE]
       ingot-lab down [--state FILE]
`;

const { values, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        state: { type: 'string' },
        agent: { type: 'string' },
        'disk-mib': { type: 'string' },
        'project-network': { type: 'string', multiple: true },
        vm: { type: 'boolean' },
        kvm: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`, 2);
  }
})();
const [command, countText] = positionals;
const stateFile = resolve(values.state ?? DEFAULT_STATE);

if (values.help || !command) {
  process.stdout.write(USAGE);
  process.exit(values.help ? 0 : 2);
}
switch (command) {
  case 'up':
    await up();
    break;
  case 'supervise':
    await supervise();
    break;
  case 'down':
    await down();
    break;
  case 'status':
    status();
    break;
  default:
    fail(`unknown command ${command}\n${USAGE}`, 2);
}

async function up(): Promise<void> {
  const count = Number(countText);
  if (!Number.isInteger(count) || count < 1 || count > 200) fail('N must be a whole number from 1 to 200', 2);
  const agent = resolve(values.agent ?? DEFAULT_AGENT);
  if (!existsSync(agent)) fail(`no agent executable at ${agent}; run \`make agent\` or pass --agent PATH`);
  const existing = readState();
  if (existing && isLive(existing.supervisorPid))
    fail(
      `a lab is already up (${existing.id}, supervisor pid ${existing.supervisorPid}); \`ingot-lab down\` first`,
    );
  if (existing) rmSync(stateFile, { force: true });
  mkdirSync(dirname(stateFile), { recursive: true });
  const logFile = `${stateFile.replace(/\.json$/, '')}.log`;
  const log = openSync(logFile, 'w', 0o600);
  const args = [
    fileURLToPath(import.meta.url),
    'supervise',
    String(count),
    '--state',
    stateFile,
    '--agent',
    agent,
  ];
  if (values['disk-mib']) args.push('--disk-mib', values['disk-mib']);
  for (const p of values['project-network'] ?? []) args.push('--project-network', p);
  if (values.vm) args.push('--vm');
  if (values.kvm) args.push('--kvm');
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log, log] });
  child.unref();
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const deadline = Date.now() + UP_TIMEOUT_MS;
  for (;;) {
    const state = readState();
    if (state && state.supervisorPid === child.pid) {
      printSummary(state);
      process.exit(0);
    }
    if (exited || Date.now() > deadline) {
      if (!exited && child.pid) killQuietly(child.pid, 'SIGTERM');
      fail(`the lab did not come up; its log (${logFile}):\n${readText(logFile)}`);
    }
    await sleep(100);
  }
}

async function supervise(): Promise<void> {
  const started = Date.now();
  const diskMiB = values['disk-mib'] ? Number(values['disk-mib']) : undefined;
  const lab = await startVirtualLab({
    count: Number(countText),
    agentBinary: resolve(values.agent ?? DEFAULT_AGENT),
    ...(diskMiB ? { diskMiB } : {}),
    ...(values['project-network']?.length ? { projectNetworks: values['project-network'] } : {}),
    ...(values.vm ? { vm: { accel: values.kvm ? ('kvm' as const) : ('tcg' as const) } } : {}),
  });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`${new Date().toISOString()} ${signal}: stopping lab ${lab.id}\n`);
    await lab.stop();
    rmSync(stateFile, { force: true });
    process.stdout.write(`${new Date().toISOString()} lab ${lab.id} stopped\n`);
    process.exit(0);
  };
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => void stop(signal));
  const state: LabState = {
    supervisorPid: process.pid,
    startTime: new Date().toISOString(),
    agentBinary: resolve(values.agent ?? DEFAULT_AGENT),
    ...lab.describe(),
  };
  // Atomically, so that `up` never reads half a file.
  const tmp = `${stateFile}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, stateFile);
  process.stdout.write(
    `${new Date().toISOString()} lab ${lab.id} up in ${Date.now() - started} ms: ${lab.nodes.length} node(s); state in ${stateFile}\n`,
  );
  setInterval(() => undefined, 1 << 30);
}

async function down(): Promise<void> {
  const state = readState();
  if (!state) {
    process.stdout.write(`no lab is up (no ${stateFile})\n`);
    return;
  }
  const pid = state.supervisorPid;
  if (isLive(pid)) {
    killQuietly(pid, 'SIGTERM');
    const deadline = Date.now() + DOWN_TIMEOUT_MS;
    while (isLive(pid) && Date.now() < deadline) await sleep(100);
    if (isLive(pid)) {
      process.stderr.write(`ingot-lab: the supervisor (pid ${pid}) did not stop in time; killing it\n`);
      killQuietly(pid, 'SIGKILL');
      while (isLive(pid)) await sleep(50);
    }
  }
  // Whatever a supervisor that was killed (or crashed) left: by the names and PIDs it recorded.
  const swept = await sweep(state);
  rmSync(stateFile, { force: true });
  const left = await leftovers(state);
  if (left.length > 0) fail(`lab ${state.id} is down, but these are left: ${left.join(', ')}`);
  process.stdout.write(
    `lab ${state.id} is down${swept.length ? ` (removed what was left: ${swept.join(', ')})` : ''}\n`,
  );
}

function status(): void {
  const state = readState();
  if (!state) {
    process.stdout.write(`no lab is up (no ${stateFile})\n`);
    process.exit(1);
  }
  const live = isLive(state.supervisorPid);
  const lines = [
    `lab ${state.id}: supervisor pid ${state.supervisorPid} ${live ? 'running' : 'NOT RUNNING'}, since ${state.startTime}`,
    `service network ${state.serviceSubnet} on ${state.serviceBridge} in ${state.switchNs}; controller side ${state.hostAddress} (${state.hostInterface}); dnsmasq side ${state.switchAddress}`,
    `project networks: ${state.projectNetworks.map((p) => `${p.bridge} ${p.subnet}`).join(', ')}`,
    '',
    'NODE     MAC                SERVICE IP      PORT  DISK         BMC              POWER  BOOT     LAST LOG LINE',
  ];
  for (const n of state.nodes) {
    const nodePid = Number(readText(join(n.bmc.dir, 'node.pid')).trim());
    const power = isLive(nodePid) ? 'on' : 'off';
    const boot = readText(join(n.bmc.dir, 'boot')).trim() || 'none';
    const last = readText(n.logFile).trim().split('\n').at(-1) ?? '';
    lines.push(
      [
        n.name.padEnd(8),
        n.mac.padEnd(18),
        n.serviceIp.padEnd(15),
        n.switchPort.padEnd(5),
        n.disk.padEnd(12),
        n.bmc.address.padEnd(16),
        power.padEnd(6),
        boot.padEnd(8),
        last.slice(0, 100),
      ].join(' '),
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  if (!live) process.exit(1);
}

function printSummary(state: LabState): void {
  process.stdout.write(
    [
      `lab ${state.id} is up (supervisor pid ${state.supervisorPid}); description and BMC passwords in ${stateFile}`,
      `controller: listen on ${state.hostAddress}; netboot: {"mode":"managed","interface":"${state.serviceBridge}","netns":"${state.switchNs}","subnet":"${state.serviceSubnet}"}`,
      `switch: driver linux-bridge, driver_options {"transport":"local","netns":"${state.switchNs}"}; networks: service ${state.serviceBridge}, ${state.projectNetworks.map((p) => `${p.bridge} (${p.subnet})`).join(', ')}`,
      ...state.nodes.map(
        (n) =>
          `  ${n.name}: mac ${n.mac} ip ${n.serviceIp} port ${n.switchPort} disk ${n.disk} bmc ${n.bmc.address} user ${n.bmc.username}${n.kind === 'vm' ? ` (QEMU VM, serial console ${n.logFile})` : ''}`,
      ),
      '',
    ].join('\n'),
  );
}

/** Removes what the state lists and is still there; returns what it removed. */
async function sweep(state: LabState): Promise<string[]> {
  const removed: string[] = [];
  for (const n of state.nodes) {
    const nodePid = Number(readText(join(n.bmc.dir, 'node.pid')).trim());
    if (isLive(nodePid)) {
      killQuietly(-nodePid, 'SIGKILL');
      killQuietly(nodePid, 'SIGKILL');
      removed.push(`node ${n.name} (pid ${nodePid})`);
    }
    if (isLive(n.bmc.simPid) && readText(`/proc/${n.bmc.simPid}/cmdline`).includes(n.bmc.dir)) {
      killQuietly(n.bmc.simPid, 'SIGKILL');
      removed.push(`ipmi_sim ${n.name} (pid ${n.bmc.simPid})`);
    }
  }
  if (existsSync(`/sys/class/net/${state.hostInterface}`)) {
    await execa('ip', ['link', 'del', state.hostInterface], { reject: false });
    removed.push(state.hostInterface);
  }
  for (const ns of state.namespaces) {
    if (!existsSync(`/run/netns/${ns}`)) continue;
    const pids = await execa('ip', ['netns', 'pids', ns], { reject: false });
    for (const p of String(pids.stdout).split(/\s+/).filter(Boolean)) killQuietly(Number(p), 'SIGKILL');
    await execa('ip', ['netns', 'del', ns], { reject: false });
    removed.push(`namespace ${ns}`);
  }
  for (const device of await loopDevicesOf(state.loopFiles)) {
    await execa('losetup', ['-d', device], { reject: false });
    removed.push(device);
  }
  if (existsSync(state.dir)) rmSync(state.dir, { recursive: true, force: true });
  // The subnet claim, if it is still the dead supervisor's (another lab may have taken it over).
  const claim = join(CLAIMS_DIR, state.serviceSubnet.split('.').slice(0, 3).join('.'));
  if (Number(readText(claim).split(' ')[0]) === state.supervisorPid) {
    rmSync(claim, { force: true });
    removed.push(`subnet claim ${state.serviceSubnet}`);
  }
  return removed;
}

async function leftovers(state: LabState): Promise<string[]> {
  const left: string[] = [];
  for (const ns of state.namespaces) if (existsSync(`/run/netns/${ns}`)) left.push(`namespace ${ns}`);
  left.push(...(await loopDevicesOf(state.loopFiles)));
  for (const n of state.nodes) if (isLive(n.bmc.simPid)) left.push(`ipmi_sim pid ${n.bmc.simPid}`);
  return left;
}

/** Loop devices backed by one of `files` (by /sys, which also shows files deleted since). */
async function loopDevicesOf(files: string[]): Promise<string[]> {
  const wanted = new Set(files);
  const out = await execa('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'], {
    reject: false,
  });
  return String(out.stdout)
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter(([name, file]) => name && file && wanted.has(file.replace(/ \(deleted\)$/, '')))
    .map(([name]) => name as string);
}

function readState(): LabState | undefined {
  try {
    return JSON.parse(readFileSync(stateFile, 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function fail(message: string, code = 1): never {
  process.stderr.write(`ingot-lab: ${message}\n`);
  process.exit(code);
}
