/**
 * NetworkService against a real controller (PGlite and PostgreSQL): network CRUD and its refusals,
 * ports moved on the Junos test switch through the API (recorded, idempotent, errors in the
 * switch's words), and the per-switch batching of the PortFlipper.
 */
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetbootState } from '../../build/gen/ingot/v1/inventory.ts';
import * as networkPb from '../../build/gen/ingot/v1/network.ts';
import { PortFlipper } from '../../controller/src/conductor/port-flips.ts';
import { createNetworkDrivers } from '../../controller/src/drivers/network/registry.ts';
import { createLogger } from '../../controller/src/log/logger.ts';
import { Node } from '../../controller/src/store/entities/node.ts';
import { SecretBox } from '../../controller/src/store/secrets.ts';
import { createToken } from '../../controller/src/store/tokens.ts';
import { FakeJunosSwitch } from '../fakes/junos-netconf-server.ts';
import {
  BACKENDS,
  InventoryApi,
  removeDataDir,
  ServiceApi,
  startTestController,
  type TestController,
} from '../support/controller.ts';

const { NetworkKind } = networkPb;
const networkApi = (address: string, token?: string) =>
  new ServiceApi(networkPb.NetworkServiceService, networkPb, address, token);

/** Polls `check` until it holds: a safety net for work the controller finishes after replying. */
async function eventually(check: () => Promise<boolean> | boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`never happened: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.each(BACKENDS)('NetworkService on %s', (backend) => {
  let ctl: TestController;
  let inventory: InventoryApi;
  let networks: ReturnType<typeof networkApi>;
  let sw: FakeJunosSwitch;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    ctl = await startTestController({ backend });
    inventory = new InventoryApi(ctl.address, ctl.token);
    networks = networkApi(ctl.address, ctl.token);
    sw = await FakeJunosSwitch.start({
      ports: Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`ge-0/0/${i + 1}`, 100])),
      vlans: [
        { name: 'provisioning', id: 100 },
        { name: 'acme-a', id: 200 },
        { name: 'acme-b', id: 300 },
      ],
    });
    ids.acme = (await inventory.call('createProject', { project: { name: 'acme' } })).id;
    await inventory.call('createSwitch', {
      switch: {
        name: 'tor1',
        address: sw.address,
        username: 'netops',
        password: 'juniper123',
        driver: 'juniper',
        driverOptions: { syntax: 'interface-mode', confirm_timeout_s: '60' },
      },
    });
    for (let i = 1; i <= 8; i++) {
      await inventory.call('createNode', {
        node: {
          name: `n${i}`,
          ip: `10.0.1.${i}`,
          mac: `52:54:00:00:01:0${i}`,
          cpus: 4,
          ramMb: 4096,
          diskGb: 100,
          bmcAddress: `10.0.2.${i}`,
          switchId: 'tor1',
          switchPort: `ge-0/0/${i}`,
        },
      });
    }
  });

  afterAll(async () => {
    inventory?.close();
    networks?.close();
    await ctl?.stop();
    await sw?.stop();
    if (ctl) removeDataDir(ctl.dataDir);
  });

  it('creates the one service network and projects’ networks, and refuses what does not fit', async () => {
    const service = await networks.call('createNetwork', {
      network: { name: 'provisioning', kind: NetworkKind.NETWORK_KIND_SERVICE, vlanId: 100 },
    });
    expect(service).toMatchObject({ kind: NetworkKind.NETWORK_KIND_SERVICE, vlanId: 100, projectId: '' });
    ids.provisioning = service.id;
    ids.acmeA = (
      await networks.call('createNetwork', { network: { name: 'acme-a', projectId: 'acme', vlanId: 200 } })
    ).id;
    ids.acmeB = (
      await networks.call('createNetwork', { network: { name: 'acme-b', projectId: ids.acme, vlanId: 300 } })
    ).id;
    ids.ghost = (
      await networks.call('createNetwork', { network: { name: 'ghost', projectId: 'acme', vlanId: 999 } })
    ).id;

    const listed = await networks.call('listNetworks', { project: 'acme' });
    expect(listed.networks.map((n) => n.name)).toEqual(['acme-a', 'acme-b', 'ghost']);
    expect(listed.networks.every((n) => n.kind === NetworkKind.NETWORK_KIND_PROJECT)).toBe(true);
    const onlyService = await networks.call('listNetworks', { kind: NetworkKind.NETWORK_KIND_SERVICE });
    expect(onlyService.networks.map((n) => n.name)).toEqual(['provisioning']);
    expect((await networks.call('getNetwork', { id: 'acme-a' })).id).toBe(ids.acmeA);

    const second = await networks.fail('createNetwork', {
      network: { name: 'prov2', kind: NetworkKind.NETWORK_KIND_SERVICE, vlanId: 101 },
    });
    expect(second).toMatchObject({ code: status.ALREADY_EXISTS, reason: 'NETWORK_ALREADY_EXISTS' });
    expect(second.metadata).toMatchObject({ field: 'kind', value: 'service' });
    const sameVlan = await networks.fail('createNetwork', {
      network: { name: 'dup', projectId: 'acme', vlanId: 200 },
    });
    expect(sameVlan).toMatchObject({
      code: status.ALREADY_EXISTS,
      metadata: { field: 'vlan_id', value: '200' },
    });

    const bad = await networks.fail('createNetwork', {
      network: { name: 'bad', vlanId: 5000, bridge: 'a-bridge-name-too-long' },
    });
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.violations.map((v) => v.field).sort()).toEqual(['network.bridge', 'network.vlan_id']);
    const noProject = await networks.fail('createNetwork', { network: { name: 'orphan', vlanId: 400 } });
    expect(noProject.violations).toEqual([
      { field: 'network.project_id', description: expect.stringContaining('is required') },
    ]);
    const serviceWithProject = await networks.fail('createNetwork', {
      network: { name: 'svc2', kind: NetworkKind.NETWORK_KIND_SERVICE, projectId: 'acme', vlanId: 401 },
    });
    expect(serviceWithProject.violations[0]?.field).toBe('network.project_id');
    expect(
      await networks.fail('createNetwork', { network: { name: 'x', projectId: 'nobody', vlanId: 402 } }),
    ).toMatchObject({ code: status.NOT_FOUND, reason: 'PROJECT_NOT_FOUND' });

    const renamed = await networks.call('updateNetwork', {
      network: { id: 'acme-b', description: 'build farm' },
      updateMask: ['description'],
    });
    expect(renamed.description).toBe('build farm');
    const moveVlan = await networks.fail('updateNetwork', {
      network: { id: 'acme-b', vlanId: 301 },
      updateMask: ['vlan_id'],
    });
    expect(moveVlan.violations).toEqual([
      { field: 'update_mask', description: '"vlan_id" cannot be changed' },
    ]);

    expect(await inventory.fail('deleteProject', { id: 'acme' })).toMatchObject({
      code: status.FAILED_PRECONDITION,
      reason: 'PROJECT_IN_USE',
    });
    expect(await networks.fail('getNetwork', { id: 'nope' })).toMatchObject({ reason: 'NETWORK_NOT_FOUND' });
    expect(await networks.withToken(undefined).fail('listNetworks', {})).toMatchObject({
      code: status.UNAUTHENTICATED,
    });
    const member = await createToken(ctl.db.fork(), {
      role: 'member',
      projectId: ids.acme,
      description: 't',
    });
    expect(await networks.withToken(member).fail('listNetworks', {})).toMatchObject({
      code: status.PERMISSION_DENIED,
    });
  });

  it('moves a node’s port on the switch, records it, pins the host key and changes nothing the second time', async () => {
    const moved = await networks.call('setNodeNetwork', { node: 'n1', network: 'acme-a' });
    expect(moved).toMatchObject({
      nodeName: 'n1',
      switchPort: 'ge-0/0/1',
      networkName: 'acme-a',
      changed: true,
    });
    expect(sw.vlansOf('ge-0/0/1')).toEqual(['200']);
    const node = await inventory.call('getNode', { id: 'n1' });
    expect(node).toMatchObject({ networkId: ids.acmeA, targetNetworkId: ids.acmeA, networkError: '' });
    expect(node.networkTime).toBeInstanceOf(Date);
    expect(node.netbootState).toBe(NetbootState.NETBOOT_STATE_UNSPECIFIED);
    await eventually(
      async () =>
        (await inventory.call('getSwitch', { id: 'tor1' })).hostKeyFingerprint === sw.hostKeyFingerprint,
      'the host key pinned on first use',
    );

    const commits = sw.commits.length;
    const again = await networks.call('setNodeNetwork', { node: node.id, network: ids.acmeA });
    expect(again.changed).toBe(false);
    expect(sw.commits.length).toBe(commits);

    const port = await networks.call('getPortStatus', { switch: 'tor1', port: 'ge-0/0/1' });
    expect(port).toMatchObject({
      mode: 'access',
      vlanIds: [200],
      networkName: 'acme-a',
      nodeName: 'n1',
      recordedNetworkId: ids.acmeA,
      inSync: true,
    });
  });

  it('reports the switch’s own refusal, records it on the node and keeps the last good network', async () => {
    const err = await networks.fail('setNodeNetwork', { node: 'n1', network: 'ghost' });
    expect(err).toMatchObject({ code: status.FAILED_PRECONDITION, reason: 'SWITCH_CONFIG_REJECTED' });
    expect(err.message).toContain('No vlan matches vlan tag 999 for interface ge-0/0/1.0');
    expect(err.metadata?.switch_message).toContain('No vlan matches vlan tag 999');
    const node = await inventory.call('getNode', { id: 'n1' });
    expect(node).toMatchObject({ networkId: ids.acmeA, targetNetworkId: ids.ghost });
    expect(node.networkError).toContain('No vlan matches vlan tag 999');
    expect(sw.vlansOf('ge-0/0/1')).toEqual(['200']);
    expect(sw.lockHeld).toBe(false);

    expect(await networks.fail('deleteNetwork', { id: 'acme-a' })).toMatchObject({
      code: status.FAILED_PRECONDITION,
      reason: 'NETWORK_IN_USE',
    });
    expect(await networks.fail('deleteNetwork', { id: 'ghost' })).toMatchObject({ reason: 'NETWORK_IN_USE' });
    await networks.call('setNodeNetwork', { node: 'n1', network: 'provisioning' });
    await networks.call('deleteNetwork', { id: 'ghost' });
    ids.ghost = (
      await networks.call('createNetwork', { network: { name: 'ghost', projectId: 'acme', vlanId: 999 } })
    ).id;
  });

  it('refuses moves it cannot make, with a reason', async () => {
    await inventory.call('createNode', {
      node: {
        name: 'loose',
        ip: '10.0.1.99',
        mac: '52:54:00:00:01:99',
        cpus: 1,
        ramMb: 1,
        diskGb: 1,
        bmcAddress: 'b',
      },
    });
    expect(await networks.fail('setNodeNetwork', { node: 'loose', network: 'acme-a' })).toMatchObject({
      code: status.FAILED_PRECONDITION,
      reason: 'NODE_NOT_ON_SWITCH',
    });
    expect(await networks.fail('setNodeNetwork', { node: 'nobody', network: 'acme-a' })).toMatchObject({
      code: status.NOT_FOUND,
      reason: 'NODE_NOT_FOUND',
    });
    expect(await networks.fail('setNodeNetwork', { node: 'n2', network: '' })).toMatchObject({
      code: status.INVALID_ARGUMENT,
      violations: [{ field: 'network', description: expect.any(String) }],
    });
    expect(await networks.fail('getPortStatus', { switch: 'tor1', port: 'ge-0/0/42' })).toMatchObject({
      code: status.FAILED_PRECONDITION,
      reason: 'SWITCH_PORT_NOT_FOUND',
    });

    sw.lockFromOtherSession('jsmith');
    try {
      const locked = await networks.fail('setNodeNetwork', { node: 'n2', network: 'acme-a' });
      expect(locked).toMatchObject({ code: status.UNAVAILABLE, reason: 'SWITCH_CONFIG_LOCKED' });
      expect(locked.message).toContain('locked by: jsmith');
      // Three tries, none got past the lock.
      expect(sw.rpcs.filter((r) => r.rpc === 'lock').length).toBeGreaterThanOrEqual(3);
    } finally {
      sw.releaseOtherSessionLock();
    }
  });

  it('batches the moves requested while a session runs into one commit, failing only the ports the switch names', async () => {
    const log = createLogger('silent');
    const flipper = new PortFlipper(
      {
        db: ctl.db,
        drivers: createNetworkDrivers(),
        secrets: SecretBox.fromFile(join(ctl.dataDir, 'secret.key'), { create: false }),
        log,
      },
      { attempts: 1 },
    );
    try {
      const edits = sw.edits.length;
      const commits = sw.commits.length;
      // The first move's session stops at its lock; five more moves queue up behind it.
      const release = sw.hold('lock');
      const first = flipper.setNodeNetwork('n3', 'acme-a');
      await eventually(
        () => flipper.pendingMoves === 0 && sw.rpcs.at(-1)?.rpc === 'lock',
        'the first session at its lock',
      );
      const rest = [4, 5, 6, 7, 8].map((i) => flipper.setNodeNetwork(`n${i}`, i % 2 ? 'acme-a' : 'acme-b'));
      await eventually(() => flipper.pendingMoves === 5, 'five moves queued');
      release();
      await Promise.all([first, ...rest]);
      expect(sw.edits.slice(edits).map((ports) => [...ports].sort())).toEqual([
        ['ge-0/0/3'],
        ['ge-0/0/4', 'ge-0/0/5', 'ge-0/0/6', 'ge-0/0/7', 'ge-0/0/8'],
      ]);
      expect(sw.commits.length - commits).toBe(4); // two batches: confirmed + confirming each
      expect([4, 5, 6, 7, 8].map((i) => sw.vlansOf(`ge-0/0/${i}`)[0])).toEqual([
        '300',
        '200',
        '300',
        '200',
        '300',
      ]);

      // One bad port in a batch: the switch names it, the others go through on their own.
      const releaseAgain = sw.hold('lock');
      const holder = flipper.moveToServiceNetwork('n3');
      await eventually(
        () => flipper.pendingMoves === 0 && sw.rpcs.at(-1)?.rpc === 'lock',
        'the session at its lock',
      );
      const bad = flipper.setNodeNetwork('n4', 'ghost').catch((e: unknown) => e);
      const good = flipper.setNodeNetwork('n5', 'acme-b');
      await eventually(() => flipper.pendingMoves === 2, 'two moves queued');
      releaseAgain();
      expect(await holder).toMatchObject({ networkName: 'provisioning', changed: true });
      expect(await bad).toMatchObject({ reason: 'SWITCH_CONFIG_REJECTED' });
      await expect(good).resolves.toMatchObject({ changed: true });
      expect(sw.vlansOf('ge-0/0/4')).toEqual(['300']);
      expect(sw.vlansOf('ge-0/0/5')).toEqual(['300']);
      expect((await inventory.call('getNode', { id: 'n4' })).networkError).toContain('vlan tag 999');
    } finally {
      await flipper.stop();
    }
  });

  it('re-applies a move that a stopped controller recorded but did not make', async () => {
    // As if a controller had recorded the target and died before touching the switch.
    const n6 = await inventory.call('getNode', { id: 'n6' });
    expect(sw.vlansOf('ge-0/0/6')).toEqual(['300']);
    await ctl.db.fork().nativeUpdate(Node, { id: n6.id }, { targetNetworkId: ids.acmeA });
    await ctl.stop();
    inventory.close();
    networks.close();
    ctl = await startTestController({ dataDir: ctl.dataDir, database: ctl.database });
    inventory = new InventoryApi(ctl.address, ctl.token);
    networks = networkApi(ctl.address, ctl.token);
    await eventually(
      async () => (await inventory.call('getNode', { id: 'n6' })).networkId === ids.acmeA,
      'the unfinished move re-applied at start',
    );
    expect(sw.vlansOf('ge-0/0/6')).toEqual(['200']);
  });
});
