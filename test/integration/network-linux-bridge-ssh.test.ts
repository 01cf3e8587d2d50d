/**
 * The Linux-bridge driver over SSH, against a real OpenSSH sshd on loopback (the switch host)
 * whose bridges live in a network namespace: key login, host key pinning, a batch moved with one
 * `ip -batch` fed over the SSH channel, and the port read back.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SwitchHostKeyMismatchError } from '../../controller/src/drivers/network/errors.ts';
import { LinuxBridgeDriver } from '../../controller/src/drivers/network/linux-bridge.ts';
import type { SwitchTarget } from '../../controller/src/drivers/network/network-driver.ts';
import { sshFingerprint } from '../../controller/src/drivers/network/ssh.ts';
import { Secret } from '../../controller/src/drivers/power/power-driver.ts';
import { NetnsLab } from '../../tools/lab/netns-lab.ts';
import { ed25519KeyPair } from '../fakes/ssh-keys.ts';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('Linux-bridge switch over SSH (OpenSSH sshd)', () => {
  let lab: NetnsLab;
  let swNs: string;
  let dir: string;
  let sshd: ChildProcess | undefined;
  let target: SwitchTarget;
  const driver = new LinuxBridgeDriver();
  const masterOf = (port: string): string | undefined =>
    (
      JSON.parse(
        execFileSync('ip', ['-n', swNs, '-j', 'link', 'show', 'dev', port], { encoding: 'utf8' }),
      ) as {
        master?: string;
      }[]
    )[0]?.master;

  beforeAll(async () => {
    lab = await NetnsLab.create('ns');
    swNs = await lab.namespace('sw');
    const nodeNs = await lab.namespace('node');
    await lab.bridge(swNs, 'br-svc');
    await lab.bridge(swNs, 'br-prj');
    await lab.veth({ ns: swNs, name: 'p-n1', master: 'br-svc' }, { ns: nodeNs, name: 'eth0' });
    await lab.veth({ ns: swNs, name: 'p-n2', master: 'br-svc' }, { ns: nodeNs, name: 'eth1' });

    dir = mkdtempSync(join(tmpdir(), 'ingot-sshd-'));
    chmodSync(dir, 0o755);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_ed25519')]);
    const client = ed25519KeyPair();
    writeFileSync(join(dir, 'authorized_keys'), `${client.public}\n`, { mode: 0o600 });
    const port = await freePort();
    writeFileSync(
      join(dir, 'sshd_config'),
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${join(dir, 'host_ed25519')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        '',
      ].join('\n'),
    );
    // OpenSSH's privilege separation directory (compiled in; Debian's service unit creates it).
    if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755 });
    const daemon = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    sshd = daemon;
    await new Promise<void>((resolve, reject) => {
      let err = '';
      daemon.stderr?.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('Server listening on')) resolve();
      });
      daemon.once('exit', (code) => reject(new Error(`sshd exited (${code}): ${err}`)));
    });
    const hostKey = ssh2.utils.parseKey(readFileSync(join(dir, 'host_ed25519.pub'), 'utf8'));
    if (hostKey instanceof Error) throw hostKey;
    target = {
      name: 'linux-sw',
      host: '127.0.0.1',
      port,
      username: 'root',
      password: new Secret(''),
      privateKey: new Secret(client.private),
      hostKeyFingerprint: sshFingerprint(hostKey.getPublicSSH()),
      options: { netns: swNs },
    };
  });

  afterAll(async () => {
    if (sshd && sshd.exitCode === null) {
      const exited = new Promise((r) => sshd?.once('exit', r));
      sshd.kill('SIGTERM');
      await exited;
    }
    await lab?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('moves a batch of ports with one ip -batch over SSH and reads them back', async () => {
    const tenant = { name: 'tenant', vlanId: 20, bridge: 'br-prj' };
    const out = await driver.applyPortChanges(target, [
      { port: 'p-n1', network: tenant },
      { port: 'p-n2', network: tenant },
    ]);
    expect(out).toEqual([
      { port: 'p-n1', changed: true },
      { port: 'p-n2', changed: true },
    ]);
    expect([masterOf('p-n1'), masterOf('p-n2')]).toEqual(['br-prj', 'br-prj']);
    expect(await driver.portStatus(target, 'p-n1')).toMatchObject({ bridge: 'br-prj', link: 'up' });
    const again = await driver.applyPortChanges(target, [{ port: 'p-n1', network: tenant }]);
    expect(again).toEqual([{ port: 'p-n1', changed: false }]);
  });

  it('refuses a host whose key is not the pinned one, and reports the key on first use', async () => {
    const wrong = { ...target, hostKeyFingerprint: 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' };
    await expect(driver.portStatus(wrong, 'p-n1')).rejects.toBeInstanceOf(SwitchHostKeyMismatchError);
    const seen: string[] = [];
    await driver.portStatus({ ...target, hostKeyFingerprint: '' }, 'p-n1', {
      onHostKey: (fp) => seen.push(fp),
    });
    expect(seen).toEqual([target.hostKeyFingerprint]);
  });

  it('reports a command the host refuses with its own words', async () => {
    await expect(
      driver.applyPortChanges({ ...target, options: { netns: 'no-such-netns' } }, [
        { port: 'p-n1', network: { name: 'svc', vlanId: 10, bridge: 'br-svc' } },
      ]),
    ).rejects.toMatchObject({
      reason: 'SWITCH_COMMAND_FAILED',
      message: expect.stringContaining('no-such-netns'),
    });
  });
});
