/**
 * The Juniper driver against the NETCONF test switch (test/fakes/junos-netconf-server.ts):
 * a real SSH connection, the netconf subsystem, both framings, and every unhappy path the
 * issue names. Assertions are on the switch's state and on the RPCs it received.
 */
import { once } from 'node:events';
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  PortReadbackError,
  SwitchAuthError,
  SwitchConfigRejectedError,
  SwitchHostKeyMismatchError,
  SwitchLockedError,
  SwitchPortNotFoundError,
  SwitchTimeoutError,
  SwitchUnreachableError,
} from '../../controller/src/drivers/network/errors.ts';
import { JuniperDriver } from '../../controller/src/drivers/network/juniper/juniper-driver.ts';
import { NetconfSession } from '../../controller/src/drivers/network/juniper/session.ts';
import type { NetworkRef, SwitchTarget } from '../../controller/src/drivers/network/network-driver.ts';
import { Secret } from '../../controller/src/drivers/power/power-driver.ts';
import { type FakeJunosOptions, FakeJunosSwitch } from '../fakes/junos-netconf-server.ts';
import { ed25519KeyPair } from '../fakes/ssh-keys.ts';

const SERVICE: NetworkRef = { name: 'service', vlanId: 100, bridge: '' };
const TENANT_A: NetworkRef = { name: 'tenant-a', vlanId: 200, bridge: '' };
const TENANT_B: NetworkRef = { name: 'tenant-b', vlanId: 300, bridge: '' };
const UNKNOWN: NetworkRef = { name: 'nowhere', vlanId: 999, bridge: '' };

const switches: FakeJunosSwitch[] = [];
afterEach(async () => {
  await Promise.all(switches.splice(0).map((s) => s.stop()));
});

async function startSwitch(opts: Partial<FakeJunosOptions> = {}): Promise<FakeJunosSwitch> {
  const sw = await FakeJunosSwitch.start({
    ports: { 'ge-0/0/1': 100, 'ge-0/0/2': 100, 'ge-0/0/3': 100, 'ge-0/0/4': 200 },
    vlans: [
      { name: 'service', id: 100 },
      { name: 'tenant-a', id: 200 },
      { name: 'tenant-b', id: 300 },
    ],
    ...opts,
  });
  switches.push(sw);
  return sw;
}

function target(sw: FakeJunosSwitch, overrides: Partial<SwitchTarget> = {}): SwitchTarget {
  return {
    name: 'tor1',
    host: '127.0.0.1',
    port: sw.port,
    username: 'netops',
    password: new Secret('juniper123'),
    privateKey: new Secret(''),
    hostKeyFingerprint: sw.hostKeyFingerprint,
    options: { syntax: sw.syntax },
    ...overrides,
  };
}

/** Waits until the switch has cleaned up after the client went away (a safety-net timeout only). */
async function settled(sw: FakeJunosSwitch): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (sw.openSessions > 0 || sw.lockHeld) {
    if (Date.now() > deadline) throw new Error('the switch kept a session or its lock');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const driver = new JuniperDriver();
const rpcNames = (sw: FakeJunosSwitch) => sw.rpcs.map((r) => r.rpc);

describe('Juniper driver: a flip is lock, edit, commit confirmed, read back, confirm, unlock', () => {
  it.each([
    ['ELS syntax with chunked framing (base:1.1)', { syntax: 'interface-mode' as const, base11: true }],
    [
      'EX port-mode syntax with end-of-message framing (base:1.0)',
      { syntax: 'port-mode' as const, base11: false },
    ],
  ])('moves a port to the tenant VLAN and back: %s', async (_what, opts) => {
    const sw = await startSwitch(opts);
    const out = await driver.applyPortChanges(target(sw), [{ port: 'ge-0/0/3', network: TENANT_A }]);
    expect(out).toEqual([{ port: 'ge-0/0/3', changed: true }]);
    expect(sw.vlansOf('ge-0/0/3')).toEqual(['200']);
    expect(rpcNames(sw)).toEqual([
      'lock',
      'get-config',
      'edit-config',
      'commit',
      'get-config',
      'commit',
      'unlock',
      'close-session',
    ]);
    expect(sw.commits.map((c) => c.confirmed)).toEqual([true, false]);
    await settled(sw);
    expect(sw.confirmPending).toBe(false);

    await driver.applyPortChanges(target(sw), [{ port: 'ge-0/0/3', network: SERVICE }]);
    expect(sw.vlansOf('ge-0/0/3')).toEqual(['100']);
  });

  it('changes nothing when the port is already there (no edit, no commit)', async () => {
    const sw = await startSwitch();
    const out = await driver.applyPortChanges(target(sw), [{ port: 'ge-0/0/4', network: TENANT_A }]);
    expect(out).toEqual([{ port: 'ge-0/0/4', changed: false }]);
    expect(rpcNames(sw)).toEqual(['lock', 'get-config', 'unlock', 'close-session']);
    expect(sw.commits).toEqual([]);
  });

  it('batches every port into one confirmed commit and reports which ones moved', async () => {
    const sw = await startSwitch();
    const out = await driver.applyPortChanges(target(sw), [
      { port: 'ge-0/0/1', network: TENANT_A },
      { port: 'ge-0/0/2', network: TENANT_B },
      { port: 'ge-0/0/4', network: TENANT_A },
    ]);
    expect(out.map((o) => o.changed)).toEqual([true, true, false]);
    expect(sw.commits.map((c) => c.confirmed)).toEqual([true, false]);
    expect([sw.vlansOf('ge-0/0/1'), sw.vlansOf('ge-0/0/2'), sw.vlansOf('ge-0/0/4')]).toEqual([
      ['200'],
      ['300'],
      ['200'],
    ]);
  });

  it('reads a port back from the switch itself', async () => {
    const sw = await startSwitch();
    expect(await driver.portStatus(target(sw), 'ge-0/0/4')).toEqual({
      port: 'ge-0/0/4',
      mode: 'access',
      vlanIds: [200],
      bridge: '',
      link: '',
    });
    await expect(driver.portStatus(target(sw), 'ge-0/0/9')).rejects.toBeInstanceOf(SwitchPortNotFoundError);
  });
});

describe('Juniper driver: the switch says no', () => {
  it('an unknown VLAN fails the commit with the switch own message; discarded, unlocked, nothing changed', async () => {
    const sw = await startSwitch();
    const err = await driver
      .applyPortChanges(target(sw), [{ port: 'ge-0/0/3', network: UNKNOWN }])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SwitchConfigRejectedError);
    expect((err as SwitchConfigRejectedError).switchMessage).toContain(
      'No vlan matches vlan tag 999 for interface ge-0/0/3.0',
    );
    expect((err as SwitchConfigRejectedError).transient).toBe(false);
    expect(rpcNames(sw)).toEqual([
      'lock',
      'get-config',
      'edit-config',
      'commit',
      'discard-changes',
      'unlock',
      'close-session',
    ]);
    await settled(sw);
    expect(sw.vlansOf('ge-0/0/3')).toEqual(['100']);
    expect(sw.candidate).toEqual(sw.running);
  });

  it('the wrong syntax for the platform is a syntax error naming the bad element, with the fix', async () => {
    const sw = await startSwitch({ syntax: 'interface-mode' });
    const err = await driver
      .applyPortChanges(target(sw, { options: { syntax: 'port-mode' } }), [
        { port: 'ge-0/0/3', network: TENANT_A },
      ])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SwitchConfigRejectedError);
    expect((err as SwitchConfigRejectedError).switchMessage).toBe('syntax error');
    expect((err as SwitchConfigRejectedError).badElement).toBe('port-mode');
    expect((err as Error).message).toContain('syntax=interface-mode');
    expect(rpcNames(sw)).toContain('discard-changes');
    expect(rpcNames(sw)).toContain('unlock');
    expect(sw.commits).toEqual([]);
  });

  it('a lock held by another session is a transient SwitchLockedError and nothing is edited', async () => {
    const sw = await startSwitch();
    sw.lockFromOtherSession('jsmith');
    const err = await driver
      .applyPortChanges(target(sw), [{ port: 'ge-0/0/3', network: TENANT_A }])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SwitchLockedError);
    expect((err as SwitchLockedError).switchMessage).toContain('configuration database locked by: jsmith');
    expect((err as SwitchLockedError).transient).toBe(true);
    expect(rpcNames(sw)).toEqual(['lock', 'close-session']);
    sw.releaseOtherSessionLock();
    await driver.applyPortChanges(target(sw), [{ port: 'ge-0/0/3', network: TENANT_A }]);
    expect(sw.vlansOf('ge-0/0/3')).toEqual(['200']);
  });

  it('uncommitted changes by someone else refuse the lock ("configuration database modified")', async () => {
    const sw = await startSwitch();
    sw.uncommittedChangeByOtherUser('ge-0/0/1', 300);
    const err = await driver
      .applyPortChanges(target(sw), [{ port: 'ge-0/0/3', network: TENANT_A }])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SwitchLockedError);
    expect((err as SwitchLockedError).switchMessage).toBe('configuration database modified');
  });

  it.each([
    ['cancel-commit (confirmed-commit:1.1)', true, 'cancel-commit'],
    ['dropping the session (confirmed-commit:1.0, as Junos)', false, 'session-ended'],
  ])('a read-back that disagrees is rolled back by %s, never confirmed', async (_what, cc11, reason) => {
    const sw = await startSwitch({ confirmedCommit11: cc11 });
    sw.rewritePortOnCommit('ge-0/0/3', 300);
    const rolledBack = once(sw, 'rollback');
    const err = await driver
      .applyPortChanges(target(sw), [{ port: 'ge-0/0/3', network: TENANT_A }])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PortReadbackError);
    expect((err as Error).message).toContain('reads back as access vlan 300');
    expect(await rolledBack).toEqual([{ reason }]);
    expect(sw.commits.map((c) => c.confirmed)).toEqual([true]);
    await settled(sw);
    expect(sw.vlansOf('ge-0/0/3')).toEqual(['100']);
  });
});

describe('Juniper driver: sessions that go wrong leave no lock and no unconfirmed change', () => {
  it('a connection dropped after the confirmed commit rolls the switch back', async () => {
    const sw = await startSwitch();
    sw.next('commit', 'drop-after');
    const rolledBack = once(sw, 'rollback');
    const err = await driver
      .applyPortChanges(target(sw), [{ port: 'ge-0/0/3', network: TENANT_A }])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SwitchUnreachableError);
    expect((err as SwitchUnreachableError).transient).toBe(true);
    expect(await rolledBack).toEqual([{ reason: 'session-ended' }]);
    await settled(sw);
    expect(sw.vlansOf('ge-0/0/3')).toEqual(['100']);
    expect(sw.confirmPending).toBe(false);
  });

  it('a read-back that never answers times out, drops the session and the switch rolls back', async () => {
    const sw = await startSwitch();
    sw.next('commit', 'drop-before'); // first a drop before anything was committed
    await expect(
      driver.applyPortChanges(target(sw), [{ port: 'ge-0/0/3', network: TENANT_A }]),
    ).rejects.toBeInstanceOf(SwitchUnreachableError);
    await settled(sw);
    expect(sw.commits).toEqual([]);

    const rolledBack = once(sw, 'rollback');
    // The read-back after the confirmed commit is the get-config that hangs.
    sw.once('commit', () => sw.next('get-config', 'stall'));
    const err = await driver
      .applyPortChanges(target(sw, { options: { rpc_timeout_ms: '500' } }), [
        { port: 'ge-0/0/3', network: TENANT_A },
      ])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SwitchTimeoutError);
    expect((err as Error).message).toContain('<get-config>');
    expect(await rolledBack).toEqual([{ reason: 'session-ended' }]);
    await settled(sw);
    expect(sw.vlansOf('ge-0/0/3')).toEqual(['100']);
  });

  it('a confirmed commit that nobody confirms rolls back when its timeout passes', async () => {
    const sw = await startSwitch();
    const session = await NetconfSession.connect({
      switchName: 'tor1',
      host: '127.0.0.1',
      port: sw.port,
      username: 'netops',
      password: new Secret('juniper123'),
      hostKeyFingerprint: sw.hostKeyFingerprint,
    });
    try {
      await session.rpc('<lock><target><candidate/></target></lock>', { timeoutMs: 5000 });
      await session.rpc(
        '<edit-config><target><candidate/></target><config><configuration><interfaces><interface><name>ge-0/0/3</name>' +
          '<unit><name>0</name><family><ethernet-switching><vlan operation="replace"><members>200</members></vlan>' +
          '</ethernet-switching></family></unit></interface></interfaces></configuration></config></edit-config>',
        { timeoutMs: 5000 },
      );
      const rolledBack = once(sw, 'rollback');
      await session.rpc('<commit><confirmed/><confirm-timeout>1</confirm-timeout></commit>', {
        timeoutMs: 5000,
      });
      expect(sw.vlansOf('ge-0/0/3')).toEqual(['200']);
      expect(await rolledBack).toEqual([{ reason: 'timeout' }]);
      expect(sw.vlansOf('ge-0/0/3')).toEqual(['100']);
    } finally {
      await session.close();
    }
  });
});

describe('Juniper driver: SSH', () => {
  it('pins the host key on first use and refuses a changed one', async () => {
    const sw = await startSwitch();
    const seen: string[] = [];
    await driver.portStatus(target(sw, { hostKeyFingerprint: '' }), 'ge-0/0/1', {
      onHostKey: (fp) => seen.push(fp),
    });
    expect(seen).toEqual([sw.hostKeyFingerprint]);

    const pinned = sw.hostKeyFingerprint;
    await sw.replaceHostKey();
    const err = await driver
      .applyPortChanges(target(sw, { hostKeyFingerprint: pinned }), [{ port: 'ge-0/0/3', network: TENANT_A }])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SwitchHostKeyMismatchError);
    expect(err).toMatchObject({ pinned, presented: sw.hostKeyFingerprint });
    // Refused before any RPC reached the new switch.
    expect(rpcNames(sw)).toEqual(['get-config', 'close-session']);
  });

  it('logs in with keyboard-interactive (Junos default), with a key, and refuses a wrong password', async () => {
    const key = ed25519KeyPair();
    const sw = await startSwitch({ keyboardInteractiveOnly: true, authorizedKey: key.public });
    await expect(driver.portStatus(target(sw), 'ge-0/0/1')).resolves.toMatchObject({ vlanIds: [100] });
    await expect(
      driver.portStatus(
        target(sw, { password: new Secret(''), privateKey: new Secret(key.private) }),
        'ge-0/0/1',
      ),
    ).resolves.toMatchObject({ vlanIds: [100] });
    const err = await driver
      .portStatus(target(sw, { password: new Secret('wrong') }), 'ge-0/0/1')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SwitchAuthError);
    expect(JSON.stringify(err)).not.toContain('wrong');
  });

  it('a switch that is not listening is unreachable (transient)', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const sw = await startSwitch();
    const err = await driver.portStatus(target(sw, { port }), 'ge-0/0/1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SwitchUnreachableError);
    expect((err as SwitchUnreachableError).transient).toBe(true);
  });
});
