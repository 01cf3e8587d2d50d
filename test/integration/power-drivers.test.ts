import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BmcOptions, resolveBmcOptions } from '../../controller/src/drivers/power/bmc-options.ts';
import {
  BmcAuthError,
  BmcBusyError,
  BmcUnreachableError,
} from '../../controller/src/drivers/power/errors.ts';
import { Secret } from '../../controller/src/drivers/power/power-driver.ts';
import { PowerManager } from '../../controller/src/drivers/power/power-manager.ts';
import { createPowerDrivers, type PowerNode } from '../../controller/src/drivers/power/registry.ts';
import { createLogger } from '../../controller/src/log/logger.ts';
import { type BmcLab, freeUdpPort, type SimBmc, startBmcLab } from '../../tools/lab/bmc-lab.ts';

const run = promisify(execFile);
const DRIVERS = ['ipmitool', 'freeipmi'] as const;
const WAVE = 20;

/**
 * Lab settings, as an operator would give them for these BMCs: ipmi_sim wants FreeIPMI's
 * opensesspriv. Timeouts stay at the defaults (safety nets on a loaded machine); the failure cases
 * shorten them, since they wait for them to expire.
 */
const LAB_OPTIONS: Partial<BmcOptions> = { freeipmiWorkarounds: ['opensesspriv'] };
const SHORT: Partial<BmcOptions> = { timeoutMs: 1_000, retries: 1 };

// Both drivers against real simulated BMCs (OpenIPMI's ipmi_sim): power changes start and stop
// the BMC's virtual-node process, boot flags round-trip, and each failure comes back typed.
describe.each(DRIVERS)('%s driver against ipmi_sim', (driver) => {
  let lab: BmcLab;
  let power: PowerManager;
  const logs: Record<string, unknown>[] = [];
  const bmc = (name: string) => lab.bmcs.find((b) => b.name === name) as SimBmc;
  const nodeOf = (b: SimBmc, options: Partial<BmcOptions> = {}, password = b.password): PowerNode => ({
    name: `node-${b.name}`,
    driver,
    bmc: {
      host: b.host,
      port: b.port,
      username: b.username,
      password: new Secret(password),
      options: resolveBmcOptions({ ...LAB_OPTIONS, ...options }),
    },
  });
  const failure = async (promise: Promise<unknown>): Promise<Error> => {
    try {
      await promise;
    } catch (err) {
      return err as Error;
    }
    throw new Error('expected a failure');
  };
  const logged = (msg: string, node: string) => logs.filter((l) => l.msg === msg && l.node === node);

  beforeAll(async () => {
    lab = await startBmcLab({
      bmcs: [
        { name: 'main' },
        { name: 'hung-os', ignoreSoftOff: true },
        { name: 'paused' },
        { name: 'busy' },
        ...Array.from({ length: WAVE }, (_, i) => ({ name: `wave${i}`, username: `ops${i}` })),
      ],
    });
    const sink = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(line));
        done();
      },
    });
    power = new PowerManager({
      drivers: createPowerDrivers(),
      log: createLogger('debug', sink),
      backoffMs: 50,
    });
  });

  afterAll(async () => {
    await lab?.stop();
  });

  it('powers on: the virtual node starts', async () => {
    const main = bmc('main');
    expect(await power.powerState(nodeOf(main))).toBe('off');
    const change = await power.setPower(nodeOf(main), 'on');
    expect(change).toEqual({ state: 'on', sent: ['on'], forcedOff: false });
    expect(main.nodePid()).toBeDefined();
    expect(main.hookCalls()).toContain('set power 1');
    expect(await power.powerState(nodeOf(main))).toBe('on');
    // Already on: nothing is sent.
    expect(await power.setPower(nodeOf(main), 'on')).toEqual({ state: 'on', sent: [], forcedOff: false });
  });

  it('resets and cycles: the node restarts as a new process', async () => {
    const main = bmc('main');
    const before = main.nodePid();
    expect(await power.setPower(nodeOf(main), 'reset')).toMatchObject({ state: 'on', sent: ['reset'] });
    const afterReset = main.nodePid();
    expect(afterReset).toBeDefined();
    expect(afterReset).not.toBe(before);
    expect(await power.setPower(nodeOf(main), 'cycle')).toMatchObject({ state: 'on', sent: ['cycle'] });
    expect(main.nodePid()).toBeDefined();
    expect(main.nodePid()).not.toBe(afterReset);
  });

  it('soft-off: the OS shuts down and the node process exits', async () => {
    const main = bmc('main');
    const change = await power.setPower(nodeOf(main), 'soft-off');
    expect(change).toEqual({ state: 'off', sent: ['soft-off'], forcedOff: false });
    expect(main.nodePid()).toBeUndefined();
    await until(() => readFileSync(`${main.dir}/node.log`, 'utf8').includes('ACPI shutdown'));
  });

  it('soft-off of an OS that ignores it: power is cut after the soft deadline', async () => {
    const hung = bmc('hung-os');
    await power.setPower(nodeOf(hung), 'on');
    const pid = hung.nodePid();
    expect(pid).toBeDefined();
    const change = await power.setPower(nodeOf(hung), 'soft-off', { softOffTimeoutMs: 300 });
    expect(change).toEqual({ state: 'off', sent: ['soft-off', 'off'], forcedOff: true });
    expect(hung.nodePid()).toBeUndefined();
  });

  it('off: a reset of a node that is off powers it on; off cuts it', async () => {
    const main = bmc('main');
    expect(await power.setPower(nodeOf(main), 'reset')).toMatchObject({ state: 'on', sent: ['on'] });
    expect(main.nodePid()).toBeDefined();
    expect(await power.setPower(nodeOf(main), 'off')).toEqual({
      state: 'off',
      sent: ['off'],
      forcedOff: false,
    });
    expect(main.nodePid()).toBeUndefined();
  });

  it('sets boot devices and reads them back', async () => {
    const main = bmc('main');
    const pxe = await power.setBootDevice(nodeOf(main), 'pxe', { persistent: false, uefi: false });
    expect(pxe.device).toBe('pxe');
    expect(main.bootDevice()).toBe('pxe');
    expect((await power.bootDevice(nodeOf(main))).device).toBe('pxe');
    // ipmi_sim accepts the persistent and EFI flags but stores only the device selector.
    const disk = await power.setBootDevice(nodeOf(main), 'disk', { persistent: true, uefi: true });
    expect(disk.device).toBe('disk');
    expect(main.bootDevice()).toBe('default');
    // The virtual node says what it booted from.
    await power.setBootDevice(nodeOf(main), 'pxe', { persistent: false, uefi: false });
    await power.setPower(nodeOf(main), 'on');
    await until(() => /booting from pxe/.test(readFileSync(`${main.dir}/node.log`, 'utf8')));
    await power.setPower(nodeOf(main), 'off');
  });

  it('wrong password: BmcAuthError with the BMC’s words, never retried', async () => {
    const main = bmc('main');
    const node = { ...nodeOf(main, { retries: 3 }, 'not-the-password'), name: 'wrong-password' };
    const err = await failure(power.powerState(node));
    expect(err).toBeInstanceOf(BmcAuthError);
    const auth = err as BmcAuthError;
    expect(auth.reason).toBe('BMC_AUTH_FAILED');
    expect(auth.bmcMessage).toMatch(driver === 'ipmitool' ? /RAKP 2 HMAC is invalid/ : /password invalid/);
    expect(auth.message).not.toContain('not-the-password');
    expect(logged('bmc command failed; retrying', 'wrong-password')).toEqual([]);
    expect(logged('bmc command failed', 'wrong-password')[0]).toMatchObject({ attempts: 1 });
  });

  it('wrong user name: BmcAuthError', async () => {
    const node = nodeOf(bmc('main'));
    const err = await failure(power.powerState({ ...node, bmc: { ...node.bmc, username: 'nobody' } }));
    expect(err).toBeInstanceOf(BmcAuthError);
    expect((err as BmcAuthError).bmcMessage).toMatch(/unauthorized name|username invalid/);
  });

  it('a port nobody answers on: BmcUnreachableError after the retries', async () => {
    const node = { ...nodeOf(bmc('main'), SHORT), name: 'dead-port' };
    node.bmc.port = await freeUdpPort();
    const err = await failure(power.powerState(node));
    expect(err).toBeInstanceOf(BmcUnreachableError);
    expect((err as BmcUnreachableError).reason).toBe('BMC_UNREACHABLE');
    expect(logged('bmc command failed; retrying', 'dead-port')).toHaveLength(1);
  });

  it('a BMC that stops answering: BmcUnreachableError, and the password is on no command line', async () => {
    const paused = bmc('paused');
    paused.pause();
    try {
      const node = nodeOf(paused, { ...SHORT, retries: 0 });
      const pending = failure(power.powerState(node));
      // While the tool waits for the silent BMC, look at it as `ps` shows it.
      const seen = await toolProcessFor(paused.port);
      expect(seen.args).not.toContain(paused.password);
      let file: string | undefined;
      if (driver === 'freeipmi') {
        file = seen.args.split(' ')[seen.args.split(' ').indexOf('--config-file') + 1] as string;
        expect(statSync(file).mode & 0o777).toBe(0o600);
        expect(statSync(dirname(file)).mode & 0o777).toBe(0o700);
      }
      const err = await pending;
      expect(err).toBeInstanceOf(BmcUnreachableError);
      // The password file lives only as long as the command.
      if (file) expect(existsSync(dirname(file))).toBe(false);
    } finally {
      paused.resume();
    }
    expect(await power.powerState(nodeOf(paused))).toBe('off');
  });

  it('a BMC out of sessions: BmcBusyError after retrying with backoff', async () => {
    const busy = bmc('busy');
    await busy.exhaustSessions();
    const node = { ...nodeOf(busy, SHORT), name: 'busy-node' };
    const err = await failure(power.powerState(node));
    expect(err).toBeInstanceOf(BmcBusyError);
    expect((err as BmcBusyError).bmcMessage).toMatch(/insufficient resources for session|BMC busy/);
    expect(logged('bmc command failed; retrying', 'busy-node')).toHaveLength(1);
  });

  it('a BMC that hangs holds up only its own commands', async () => {
    const paused = bmc('paused');
    const main = bmc('main');
    paused.pause();
    let settled = false;
    // Long timeout: it only ends when the BMC answers again.
    const pending = power.powerState(nodeOf(paused, { retries: 0 })).finally(() => {
      settled = true;
    });
    try {
      expect(await power.setPower(nodeOf(main), 'on')).toMatchObject({ state: 'on' });
      expect(await power.setPower(nodeOf(main), 'off')).toMatchObject({ state: 'off' });
      expect(settled).toBe(false);
    } finally {
      paused.resume();
    }
    expect(await pending).toBe('off');
  });

  it(`${WAVE} nodes powered on at once all come up, then all go off`, async () => {
    const wave = lab.bmcs.filter((b) => b.name.startsWith('wave'));
    const nodes = wave.map((b) => nodeOf(b));
    const changes = await Promise.all(nodes.map((n) => power.setPower(n, 'on')));
    expect(changes.map((c) => c.state)).toEqual(nodes.map(() => 'on'));
    const pids = wave.map((b) => b.nodePid());
    expect(pids.every((p) => p !== undefined)).toBe(true);
    expect(new Set(pids).size).toBe(WAVE);
    await Promise.all(nodes.map((n) => power.setPower(n, 'off')));
    expect(wave.map((b) => b.nodePid())).toEqual(wave.map(() => undefined));
  });

  it('never wrote a password to the log', () => {
    expect(logs.length).toBeGreaterThan(0);
    const text = JSON.stringify(logs);
    for (const b of lab.bmcs) expect(text).not.toContain(b.password);
    expect(text).not.toContain('not-the-password');
  });
});

/** Resolves once `check` holds (the virtual node writes its log asynchronously); 30 s safety net. */
async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met: ${check.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Polls `ps` until an IPMI tool talking to `port` shows up; returns its command line as `ps` prints it. */
async function toolProcessFor(port: number): Promise<{ pid: number; args: string }> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const { stdout } = await run('ps', ['-eo', 'pid=,args=']);
    for (const line of stdout.split('\n')) {
      const match = /^\s*(\d+)\s+(.*)$/.exec(line);
      if (match && /ipmitool|ipmipower/.test(match[2] ?? '') && (match[2] ?? '').includes(String(port))) {
        return { pid: Number(match[1]), args: match[2] ?? '' };
      }
    }
  }
  throw new Error(`no IPMI tool for port ${port} seen in ps`);
}
