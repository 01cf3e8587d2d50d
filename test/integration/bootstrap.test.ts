import { type ChildProcess, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentApi, ensureAgentBinary, eventually } from '../support/agent.ts';
import {
  InventoryApi,
  removeDataDir,
  startTestController,
  type TestController,
} from '../support/controller.ts';
import { REPO_ROOT } from '../support/process.ts';

// The bootstrap image (`make bootstrap`, bootstrap/build.sh) booted in QEMU (TCG) against a real
// controller in this process. QEMU's user-mode network gives the guest DHCP and reaches the host's
// loopback as 10.0.2.2, where the controller listens. The init must get a lease, download and verify
// the agent, and run it until the agent's session appears. A second build remasters a synthetic
// Tiny Core-style base (a gzip'd newc cpio, like core.gz) and boots it to its network check.

const NODE_MAC = '52:54:00:b0:07:01';
const BUILD_LOCK = join(REPO_ROOT, 'build/.bootstrap-build.lock');
const BUSYBOX = '/bin/busybox';

/** bootstrap/build.sh under a lock (test files run in parallel; they share the kernel cache). */
function buildBootstrap(env: Record<string, string> = {}) {
  return execa('flock', [BUILD_LOCK, join(REPO_ROOT, 'bootstrap/build.sh')], {
    cwd: REPO_ROOT,
    env: { BOOTSTRAP_BOOT_CHECK: '0', ...env },
    timeout: 600_000,
    all: true,
  });
}

/** The port of `host:port`. */
const portOf = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));

describe('the bootstrap image', () => {
  let ctl: TestController;
  let qemu: ChildProcess | undefined;
  let work = '';
  let nodeId = '';
  let serialLog = '';
  const serial = () => (existsSync(serialLog) ? readFileSync(serialLog, 'utf8') : '');

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'ingot-bootstrap-'));
    serialLog = join(work, 'serial.log');
    await ensureAgentBinary();
    await buildBootstrap();
    ctl = await startTestController();
    const node = await new InventoryApi(ctl.address, ctl.token).call('createNode', {
      node: {
        name: 'bootstrap-node',
        ip: '10.0.2.15',
        mac: NODE_MAC,
        cpus: 1,
        ramMb: 1024,
        diskGb: 1,
        bmcAddress: '10.9.2.1',
        bmcUsername: 'admin',
      },
    });
    nodeId = node.id;
  }, 600_000);

  afterAll(async () => {
    if (qemu && qemu.exitCode === null && qemu.signalCode === null) {
      const exited = new Promise((resolve) => qemu?.once('exit', resolve));
      qemu.kill('SIGKILL');
      await exited;
    }
    await ctl?.stop();
    if (ctl) removeDataDir(ctl.dataDir);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('gets a lease, downloads and verifies the agent, and the agent connects', async () => {
    const { token } = await agentApi(ctl.address, ctl.token).call('createAgentToken', {
      node: 'bootstrap-node',
    });
    const append = [
      'console=ttyS0',
      'panic=-1',
      // Else the kernel prints its command line, token included, on the console.
      'quiet',
      `ingot.controller=10.0.2.2:${portOf(ctl.address)}`,
      `ingot.http=http://10.0.2.2:${portOf(ctl.httpAddress)}`,
      `ingot.node=${nodeId}`,
      `ingot.token=${token}`,
    ].join(' ');
    const started = Date.now();
    // The kernel command line is visible in ps here; the token is a throwaway for this test.
    qemu = spawn(
      'qemu-system-x86_64',
      [
        ...['-machine', 'q35', '-accel', 'tcg', '-m', '1024', '-nographic', '-no-reboot'],
        ...['-kernel', join(REPO_ROOT, 'build/bootstrap/vmlinuz')],
        ...['-initrd', join(REPO_ROOT, 'build/bootstrap/initrd.img'), '-append', append],
        ...['-netdev', 'user,id=n0', '-device', `virtio-net-pci,netdev=n0,mac=${NODE_MAC}`],
        ...['-serial', `file:${serialLog}`, '-monitor', 'none', '-display', 'none'],
      ],
      { stdio: 'ignore' },
    );
    const exited = new Promise<void>((resolve) => qemu?.once('exit', () => resolve()));
    let gone = false;
    void exited.then(() => {
      gone = true;
    });

    await eventually('the agent in the QEMU guest to connect', async () => {
      if (gone) throw new Error(`QEMU exited; serial console:\n${serial()}`);
      const { agents } = await agentApi(ctl.address, ctl.token).call('listAgents', {});
      return agents.some((a) => a.nodeId === nodeId) || undefined;
    }).catch((err: Error) => {
      throw new Error(`${err.message}\nserial console:\n${serial()}`);
    });
    const connectedS = (Date.now() - started) / 1000;

    const log = serial();
    for (const step of [
      /ingot-init: modules loaded: \d+/,
      /ingot-init: kernel arguments: ingot\.http=http:\/\/10\.0\.2\.2:\d+ .*ingot\.token=set/,
      /ingot-init: DHCP on eth0/,
      /ingot-init: network up on eth0: 10\.0\.2\.15\/24/,
      /ingot-init: agent downloaded \(\d+ bytes\), sha256 [0-9a-f]{64} verified/,
      /ingot-init: starting the agent/,
    ]) {
      expect(log).toMatch(step);
    }
    expect(log).not.toContain(token);
    const at = (re: RegExp) => re.exec(log)?.[1];
    console.log(
      `bootstrap boot (QEMU TCG): network up at ${at(/\[([\d.]+)\] ingot-init: network up/)} s, ` +
        `agent verified at ${at(/\[([\d.]+)\] ingot-init: agent downloaded/)} s (guest uptime); ` +
        `agent connected ${connectedS.toFixed(1)} s after QEMU started`,
    );
  }, 180_000);

  it('remasters a Tiny Core-style core.gz and boots it to its network check', async () => {
    // A stand-in base: Tiny Core's layout in miniature, packed as core.gz is (gzip'd newc cpio).
    const base = join(work, 'base');
    mkdirSync(join(base, 'etc/sysconfig'), { recursive: true });
    mkdirSync(join(base, 'bin'));
    mkdirSync(join(base, 'opt'));
    writeFileSync(join(base, 'init'), '#!/bin/sh\necho tiny core init\n', { mode: 0o755 });
    writeFileSync(join(base, 'etc/sysconfig/tcuser'), 'tc\n');
    writeFileSync(join(base, 'opt/bootsync.sh'), '#!/bin/sh\n', { mode: 0o755 });
    symlinkSync('busybox', join(base, 'bin/sh'));
    writeFileSync(join(base, 'bin/busybox'), readFileSync(BUSYBOX), { mode: 0o755 });
    const coreGz = join(work, 'core.gz');
    const files = (await execa('find', ['.'], { cwd: base })).stdout;
    const cpio = await execa(BUSYBOX, ['cpio', '-o', '-H', 'newc'], {
      cwd: base,
      input: files,
      encoding: 'buffer',
    });
    writeFileSync(coreGz, gzipSync(cpio.stdout));

    const out = join(work, 'remastered');
    const build = await buildBootstrap({ TINYCORE: coreGz, BOOTSTRAP_OUT: out, BOOTSTRAP_BOOT_CHECK: '1' });
    expect(build.all).toContain(`base ${coreGz}`);
    expect(build.all).toMatch(/boot check: network up [\d.]+ s after the kernel started/);

    const unpacked = join(work, 'unpacked');
    mkdirSync(unpacked);
    await execa(BUSYBOX, ['cpio', '-i', '-d'], {
      cwd: unpacked,
      input: gunzipSync(readFileSync(join(out, 'initrd.img'))),
    });
    expect(readFileSync(join(unpacked, 'init.tinycore'), 'utf8')).toContain('tiny core init');
    expect(readFileSync(join(unpacked, 'init'), 'utf8')).toContain('ingot-init');
    expect(readFileSync(join(unpacked, 'etc/sysconfig/tcuser'), 'utf8')).toBe('tc\n');
    expect(existsSync(join(unpacked, 'usr/lib/ingot/bin/busybox'))).toBe(true);
    expect(existsSync(join(unpacked, 'lib64/ld-linux-x86-64.so.2'))).toBe(true);

    // Built again with nothing changed: nothing is rebuilt.
    const again = await buildBootstrap({ TINYCORE: coreGz, BOOTSTRAP_OUT: out });
    expect(again.all).toContain('up to date');
  }, 300_000);

  it('says clearly when the Debian archive cannot be reached and no kernel is cached', async () => {
    // apt through a proxy on a port nobody listens on: what an unreachable archive looks like.
    const aptConfig = join(work, 'apt.conf');
    writeFileSync(aptConfig, 'Acquire::http::Proxy "http://127.0.0.1:9";\nAcquire::Retries "0";\n');
    const failed = await buildBootstrap({
      APT_CONFIG: aptConfig,
      BOOTSTRAP_CACHE: join(work, 'empty-cache'),
      BOOTSTRAP_OUT: join(work, 'offline'),
    }).catch((err: { all?: string; exitCode?: number }) => err);
    expect(failed).toMatchObject({ exitCode: 1 });
    expect(failed.all).toMatch(
      /error: cannot download linux-image-\S+ from the Debian archive \(Err:.*\)\. Check the network/,
    );
  });

  it('says clearly when the base is not a core.gz', async () => {
    const bad = join(work, 'not-core.gz');
    writeFileSync(bad, 'plain text');
    const failed = await buildBootstrap({ TINYCORE: bad, BOOTSTRAP_OUT: join(work, 'bad') }).catch(
      (err: { all?: string }) => err,
    );
    expect(failed.all).toContain("is not gzip'd");
  });
});
