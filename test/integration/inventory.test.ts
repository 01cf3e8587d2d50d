import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProvisionState } from '../../build/gen/ingot/v1/inventory.ts';
import { Node } from '../../controller/src/store/entities/node.ts';
import { Switch } from '../../controller/src/store/entities/switch.ts';
import { createToken } from '../../controller/src/store/tokens.ts';
import {
  BACKENDS,
  InventoryApi,
  removeDataDir,
  startTestController,
  type TestController,
} from '../support/controller.ts';

const SWITCH_PASSWORD = 'sw-Pa55word-never-shown';
const BMC_PASSWORD = 'bmc-Pa55word-never-shown';

/** The seed's `node add <ip> <mac> <cpus> <ram> <hdd> <ipmihost> <ipmiuser> <ipmipass> <switchid> <switchport>`. */
function seedNode(n: number, switchId: string) {
  return {
    ip: `10.0.1.${n}`,
    mac: `52:54:00:00:01:${n.toString(16).padStart(2, '0')}`,
    cpus: 8,
    ramMb: 16384,
    diskGb: 500,
    bmcAddress: `10.0.2.${n}`,
    bmcUsername: 'root',
    bmcPassword: BMC_PASSWORD,
    switchId,
    switchPort: `ge-0/0/${n}`,
  };
}

describe.each(BACKENDS)('InventoryService on %s', (backend) => {
  let controller: TestController;
  let api: InventoryApi;
  const responses: unknown[] = [];

  beforeAll(async () => {
    controller = await startTestController({ backend });
    api = new InventoryApi(controller.address, controller.token);
    // Every response passes through here so the secrets check below sees them all.
    const call = api.call.bind(api);
    api.call = (async (method: never, request: never) => {
      const response = await call(method, request);
      responses.push(response);
      return response;
    }) as typeof api.call;
  });

  afterAll(async () => {
    api?.close();
    await controller?.stop();
    if (controller) removeDataDir(controller.dataDir);
  });

  describe('authentication', () => {
    it('rejects calls without a token, with a malformed header and with an unknown token', async () => {
      for (const token of [undefined, 'not-a-valid-token']) {
        const err = await api.withToken(token).fail('listNodes', {});
        expect(err.code).toBe(status.UNAUTHENTICATED);
        expect(err.reason).toBe('UNAUTHENTICATED');
      }
    });

    it('refuses inventory changes to a project member', async () => {
      const member = await createToken(controller.db.fork(), { role: 'member', description: 'test member' });
      const err = await api
        .withToken(member)
        .fail('createHost', { host: { name: 'h', vcpus: 1, ramMb: 1, diskGb: 1 } });
      expect(err.code).toBe(status.PERMISSION_DENIED);
      expect(err.message).toContain('admin');
    });
  });

  describe('switches', () => {
    it('adds a switch as the seed does, names it after its address and never returns the password', async () => {
      const sw = await api.call('createSwitch', {
        switch: {
          address: '10.0.0.1',
          username: 'admin',
          password: SWITCH_PASSWORD,
          driver: 'juniper',
          description: 'rack 1 ToR',
        },
      });
      expect(sw).toMatchObject({
        name: '10.0.0.1',
        address: '10.0.0.1',
        driver: 'juniper',
        password: '',
        hasPassword: true,
      });
      expect(sw.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(sw.createTime).toBeInstanceOf(Date);
      expect(await api.call('getSwitch', { id: sw.id })).toEqual(sw);
      expect(await api.call('getSwitch', { id: '10.0.0.1' })).toEqual(sw);
    });

    it('reports every invalid field at once', async () => {
      const err = await api.fail('createSwitch', { switch: { address: 'bad host:99999', driver: 'cisco' } });
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.violations.map((v) => v.field).sort()).toEqual(['switch.address', 'switch.driver']);
      expect(err.violations.find((v) => v.field === 'switch.driver')?.description).toContain('juniper');
      expect((await api.fail('createSwitch', {})).violations).toEqual([
        { field: 'switch', description: 'is required' },
      ]);
    });

    it('keeps names unique', async () => {
      const err = await api.fail('createSwitch', {
        switch: { address: '10.0.0.1:830', driver: 'juniper', name: '10.0.0.1' },
      });
      expect(err.code).toBe(status.ALREADY_EXISTS);
      expect(err.metadata).toMatchObject({ kind: 'switch', field: 'name', value: '10.0.0.1' });
    });

    it('updates only the masked fields and rejects unknown ones', async () => {
      const sw = await api.call('updateSwitch', {
        switch: { id: '10.0.0.1', description: 'rack 1, new cable', driver: 'noop' },
        updateMask: ['description'],
      });
      expect(sw).toMatchObject({ description: 'rack 1, new cable', driver: 'juniper', hasPassword: true });
      const bad = await api.fail('updateSwitch', {
        switch: { id: '10.0.0.1' },
        updateMask: ['create_time', 'colour'],
      });
      expect(bad.code).toBe(status.INVALID_ARGUMENT);
      expect(bad.violations).toHaveLength(2);
      expect((await api.fail('updateSwitch', { switch: { id: '10.0.0.1' } })).violations[0]?.field).toBe(
        'update_mask',
      );
      expect(
        (await api.fail('updateSwitch', { switch: { id: 'sw-nope' }, updateMask: ['description'] })).code,
      ).toBe(status.NOT_FOUND);
    });

    it('filters the list by driver', async () => {
      await api.call('createSwitch', {
        switch: { address: 'tor-2.lab:2830', driver: 'linux-bridge', name: 'tor-2' },
      });
      const juniper = await api.call('listSwitches', { driver: 'juniper' });
      expect(juniper.switches.map((s) => s.name)).toEqual(['10.0.0.1']);
      expect((await api.call('listSwitches', {})).switches.map((s) => s.name)).toEqual(['10.0.0.1', 'tor-2']);
    });

    it('answers NOT_FOUND for an unknown switch and INVALID_ARGUMENT for an empty id', async () => {
      expect((await api.fail('getSwitch', { id: 'nope' })).code).toBe(status.NOT_FOUND);
      expect((await api.fail('getSwitch', { id: '01a211e0-0000-7000-8000-000000000000' })).code).toBe(
        status.NOT_FOUND,
      );
      expect((await api.fail('deleteSwitch', { id: '' })).code).toBe(status.INVALID_ARGUMENT);
    });
  });

  describe('nodes', () => {
    it("adds nodes with the seed's fields and normalises MAC and BMC address", async () => {
      const node = await api.call('createNode', {
        node: { ...seedNode(1, '10.0.0.1'), mac: '52-54-00-00-01-01', bmcAddress: 'ipmi://10.0.2.1:623' },
      });
      const sw = await api.call('getSwitch', { id: '10.0.0.1' });
      expect(node).toMatchObject({
        name: 'node-525400000101',
        mac: '52:54:00:00:01:01',
        bmcAddress: '10.0.2.1:623',
        bmcPassword: '',
        hasBmcPassword: true,
        powerDriver: 'ipmitool',
        switchId: sw.id,
        switchPort: 'ge-0/0/1',
        provisionState: ProvisionState.PROVISION_STATE_AVAILABLE,
        maintenance: false,
      });
      const freeipmi = await api.call('createNode', {
        node: { ...seedNode(2, sw.id), powerDriver: 'freeipmi', name: 'rack1-u2' },
      });
      expect(freeipmi).toMatchObject({ name: 'rack1-u2', powerDriver: 'freeipmi' });
    });

    it('rejects bad MACs, IPs, sizes and drivers with field violations', async () => {
      const err = await api.fail('createNode', {
        node: {
          ip: '10.0.1.300',
          mac: '01:00:5e:00:00:01',
          cpus: 0,
          ramMb: 2 ** 40,
          diskGb: 0,
          bmcAddress: 'redfish://x',
          powerDriver: 'snmp',
        },
      });
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.violations.map((v) => v.field).sort()).toEqual(
        [
          'node.bmc_address',
          'node.cpus',
          'node.disk_gb',
          'node.ip',
          'node.mac',
          'node.power_driver',
          'node.ram_mb',
        ].sort(),
      );
      expect(err.violations.find((v) => v.field === 'node.mac')?.description).toContain('52:54:00:12:34:56');
    });

    it('refuses an unknown switch, a duplicate MAC and a port already in use', async () => {
      expect((await api.fail('createNode', { node: seedNode(3, 'sw-missing') })).code).toBe(status.NOT_FOUND);
      const dupMac = await api.fail('createNode', {
        node: { ...seedNode(3, '10.0.0.1'), mac: '525400000101' },
      });
      expect(dupMac).toMatchObject({
        code: status.ALREADY_EXISTS,
        metadata: { field: 'mac', value: '52:54:00:00:01:01' },
      });
      const dupPort = await api.fail('createNode', {
        node: { ...seedNode(3, '10.0.0.1'), switchPort: 'ge-0/0/1' },
      });
      expect(dupPort).toMatchObject({ code: status.ALREADY_EXISTS, metadata: { field: 'switch_port' } });
      const portless = await api.fail('createNode', { node: { ...seedNode(3, '10.0.0.1'), switchPort: '' } });
      expect(portless.violations).toEqual([
        { field: 'node.switch_port', description: 'is required when the node is on a switch' },
      ]);
    });

    it('puts a node in maintenance and filters by it, by switch and by state', async () => {
      const node = await api.call('updateNode', {
        node: { id: 'rack1-u2', maintenance: true, maintenanceReason: 'fan failure' },
        updateMask: ['maintenance', 'node.maintenance_reason'],
      });
      expect(node).toMatchObject({ maintenance: true, maintenanceReason: 'fan failure' });
      const inMaintenance = await api.call('listNodes', { maintenance: true });
      expect(inMaintenance.nodes.map((n) => n.name)).toEqual(['rack1-u2']);
      expect((await api.call('listNodes', { maintenance: false })).nodes.map((n) => n.name)).toEqual([
        'node-525400000101',
      ]);
      expect((await api.call('listNodes', { switchId: '10.0.0.1' })).nodes).toHaveLength(2);
      expect((await api.call('listNodes', { switchId: 'tor-2' })).nodes).toHaveLength(0);
      expect(
        (await api.call('listNodes', { provisionState: ProvisionState.PROVISION_STATE_ACTIVE })).nodes,
      ).toHaveLength(0);
      expect((await api.fail('listNodes', { switchId: 'nope' })).code).toBe(status.NOT_FOUND);
      const back = await api.call('updateNode', {
        node: { id: 'rack1-u2', maintenance: false },
        updateMask: ['maintenance'],
      });
      expect(back).toMatchObject({ maintenance: false, maintenanceReason: '' });
    });

    it('never lets a caller set the provision state', async () => {
      const err = await api.fail('updateNode', {
        node: { id: 'rack1-u2', provisionState: ProvisionState.PROVISION_STATE_ACTIVE },
        updateMask: ['provision_state'],
      });
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.violations[0]?.field).toBe('update_mask');
    });

    it('moves a node to another switch port', async () => {
      const node = await api.call('updateNode', {
        node: { id: 'rack1-u2', switchId: 'tor-2', switchPort: 'veth-u2' },
        updateMask: ['switch_id', 'switch_port'],
      });
      const tor2 = await api.call('getSwitch', { id: 'tor-2' });
      expect(node).toMatchObject({ switchId: tor2.id, switchPort: 'veth-u2' });
    });

    it('keeps a switch with nodes and a node with an instance', async () => {
      const sw = await api.fail('deleteSwitch', { id: 'tor-2' });
      expect(sw).toMatchObject({ code: status.FAILED_PRECONDITION, reason: 'SWITCH_IN_USE' });
      const em = controller.db.fork();
      const row = await em.findOneOrFail(Node, { name: 'rack1-u2' });
      row.instanceId = '01a211e0-0000-7000-8000-0000000000aa';
      row.provisionState = 'active';
      await em.flush();
      const node = await api.fail('deleteNode', { id: 'rack1-u2' });
      expect(node).toMatchObject({ code: status.FAILED_PRECONDITION, reason: 'NODE_IN_USE' });
      expect(node.message).toContain('active');
      row.instanceId = null;
      row.provisionState = 'available';
      await em.flush();
      await api.call('deleteNode', { id: 'rack1-u2' });
      await api.call('deleteSwitch', { id: 'tor-2' });
      expect((await api.fail('getNode', { id: 'rack1-u2' })).code).toBe(status.NOT_FOUND);
      expect((await api.fail('deleteSwitch', { id: 'tor-2' })).code).toBe(status.NOT_FOUND);
    });
  });

  describe('projects, flavors, hosts and aggregates', () => {
    it("creates the objects of the seed's placement setup", async () => {
      expect(await api.call('createProject', { project: { name: 'secure', isolated: true } })).toMatchObject({
        isolated: true,
      });
      expect(await api.call('createProject', { project: { name: 'common' } })).toMatchObject({
        isolated: false,
      });
      const flavor = await api.call('createFlavor', {
        flavor: {
          name: 'bm.large',
          vcpus: 8,
          ramMb: 16384,
          diskGb: 500,
          extraSpecs: { 'hw:cpu_model': 'xeon' },
        },
      });
      expect(flavor.extraSpecs).toEqual({ 'hw:cpu_model': 'xeon' });
      for (const name of ['compute-1', 'compute-2', 'secure-1']) {
        await api.call('createHost', { host: { name, vcpus: 32, ramMb: 131072, diskGb: 2000 } });
      }
      expect(
        await api.call('createAggregate', { aggregate: { name: 'default', availabilityZone: 'nova' } }),
      ).toMatchObject({
        availabilityZone: 'nova',
        hosts: [],
        metadata: {},
      });
      await api.call('createAggregate', { aggregate: { name: 'secure-pool', availabilityZone: 'nova' } });
    });

    it('validates them', async () => {
      expect((await api.fail('createProject', { project: { name: 'secure' } })).code).toBe(
        status.ALREADY_EXISTS,
      );
      expect((await api.fail('createProject', { project: { name: 'bad name!' } })).violations[0]?.field).toBe(
        'project.name',
      );
      const flavor = await api.fail('createFlavor', {
        flavor: { name: 'f', vcpus: 1, ramMb: 1, diskGb: 1, extraSpecs: { 'bad key': 'x' } },
      });
      expect(flavor.violations[0]?.field).toBe('flavor.extra_specs');
      const resize = await api.fail('updateFlavor', {
        flavor: { id: 'bm.large', vcpus: 16 },
        updateMask: ['vcpus'],
      });
      expect(resize.violations[0]).toEqual({
        field: 'update_mask',
        description: '"vcpus" cannot be changed',
      });
      const host = await api.fail('createHost', { host: { name: 'h', vcpus: 1 } });
      expect(host.violations.map((v) => v.field)).toEqual(['host.ram_mb', 'host.disk_gb']);
    });

    it('adds hosts and nodes to aggregates and dedicates one to a project by name', async () => {
      await api.call('addAggregateHost', { aggregate: 'default', host: 'compute-1' });
      await api.call('addAggregateHost', { aggregate: 'default', host: 'compute-2' });
      const again = await api.call('addAggregateHost', { aggregate: 'default', host: 'compute-2' });
      expect(again.hosts).toEqual(['compute-1', 'compute-2']);
      const withNode = await api.call('addAggregateHost', {
        aggregate: 'default',
        host: 'node-525400000101',
      });
      expect(withNode.hosts).toEqual(['compute-1', 'compute-2', 'node-525400000101']);
      await api.call('addAggregateHost', { aggregate: 'secure-pool', host: 'secure-1' });
      const secure = await api.call('getProject', { id: 'secure' });
      const dedicated = await api.call('setAggregateMetadata', {
        aggregate: 'secure-pool',
        set: { project_id: 'secure', tier: 'gold' },
      });
      expect(dedicated.metadata).toEqual({ project_id: secure.id, tier: 'gold' });
      const unset = await api.call('setAggregateMetadata', { aggregate: 'secure-pool', unset: ['tier'] });
      expect(unset.metadata).toEqual({ project_id: secure.id });
      expect((await api.call('listAggregates', {})).aggregates.map((a) => [a.name, a.hosts.length])).toEqual([
        ['default', 3],
        ['secure-pool', 1],
      ]);
    });

    it('guards membership and dedication', async () => {
      expect((await api.fail('addAggregateHost', { aggregate: 'default', host: 'compute-9' })).code).toBe(
        status.NOT_FOUND,
      );
      expect((await api.fail('addAggregateHost', { aggregate: 'nope', host: 'compute-1' })).code).toBe(
        status.NOT_FOUND,
      );
      expect(
        (await api.fail('removeAggregateHost', { aggregate: 'secure-pool', host: 'compute-1' })).reason,
      ).toBe('NOT_A_MEMBER');
      expect(
        (await api.fail('setAggregateMetadata', { aggregate: 'default', set: { project_id: 'ghost' } })).code,
      ).toBe(status.NOT_FOUND);
      const twice = await api.fail('setAggregateMetadata', {
        aggregate: 'default',
        set: { project_id: 'secure' },
      });
      expect(twice).toMatchObject({ code: status.FAILED_PRECONDITION, reason: 'PROJECT_ALREADY_DEDICATED' });
      const both = await api.fail('setAggregateMetadata', {
        aggregate: 'default',
        set: { a: '1' },
        unset: ['a'],
      });
      expect(both.code).toBe(status.INVALID_ARGUMENT);
      expect((await api.fail('deleteProject', { id: 'secure' })).reason).toBe('PROJECT_IN_USE');
      expect((await api.fail('deleteAggregate', { id: 'secure-pool' })).reason).toBe('AGGREGATE_NOT_EMPTY');
    });

    it('removes members when a host or node leaves the inventory', async () => {
      await api.call('deleteHost', { id: 'compute-2' });
      expect((await api.call('getAggregate', { id: 'default' })).hosts).toEqual([
        'compute-1',
        'node-525400000101',
      ]);
      const after = await api.call('removeAggregateHost', { aggregate: 'default', host: 'compute-1' });
      expect(after.hosts).toEqual(['node-525400000101']);
    });

    it('renames and deletes', async () => {
      const renamed = await api.call('updateProject', {
        project: { id: 'common', name: 'shared', description: 'everyone' },
        updateMask: ['name', 'description'],
      });
      expect(renamed).toMatchObject({ name: 'shared', description: 'everyone' });
      await api.call('deleteProject', { id: 'shared' });
      await api.call('deleteFlavor', { id: 'bm.large' });
      expect((await api.fail('getFlavor', { id: 'bm.large' })).code).toBe(status.NOT_FOUND);
      const zone = await api.call('updateAggregate', {
        aggregate: { id: 'default', availabilityZone: 'az-2' },
        updateMask: ['availability_zone'],
      });
      expect(zone.availabilityZone).toBe('az-2');
      const host = await api.call('updateHost', {
        host: { id: 'compute-1', ramMb: 262144 },
        updateMask: ['ram_mb'],
      });
      expect(host.ramMb).toBe(262144);
    });
  });

  describe('pagination', () => {
    it('pages through a list in creation order and refuses foreign or forged tokens', async () => {
      for (let i = 0; i < 7; i++)
        await api.call('createFlavor', { flavor: { name: `page-${i}`, vcpus: 1, ramMb: 512, diskGb: 1 } });
      const names: string[] = [];
      let token = '';
      let pages = 0;
      do {
        const page = await api.call('listFlavors', { pageSize: 3, pageToken: token });
        names.push(...page.flavors.map((f) => f.name));
        token = page.nextPageToken;
        pages++;
      } while (token);
      expect(names).toEqual([0, 1, 2, 3, 4, 5, 6].map((i) => `page-${i}`));
      expect(pages).toBe(3);

      await api.call('createNode', { node: seedNode(9, '10.0.0.1') });
      const first = await api.call('listNodes', { pageSize: 1 });
      expect(first.nextPageToken).not.toBe('');
      const foreign = await api.fail('listNodes', {
        pageSize: 1,
        pageToken: first.nextPageToken,
        maintenance: true,
      });
      expect(foreign.violations[0]?.field).toBe('page_token');
      expect((await api.fail('listFlavors', { pageToken: 'garbage!' })).violations[0]?.field).toBe(
        'page_token',
      );
      expect((await api.fail('listFlavors', { pageSize: -1 })).violations[0]?.field).toBe('page_size');
    });
  });

  describe('secrets', () => {
    it('stores passwords sealed and never returns them', async () => {
      const em = controller.db.fork();
      const sw = await em.findOneOrFail(Switch, { name: '10.0.0.1' });
      expect(sw.passwordSealed).toMatch(/^v1:/);
      expect(sw.passwordSealed).not.toContain(SWITCH_PASSWORD);
      const node = await em.findOneOrFail(Node, { name: 'node-525400000101' });
      expect(node.bmcPasswordSealed).not.toContain(BMC_PASSWORD);
      const everything = JSON.stringify(responses);
      expect(everything).not.toContain(SWITCH_PASSWORD);
      expect(everything).not.toContain(BMC_PASSWORD);
      expect(controller.logs.join('\n')).not.toContain(SWITCH_PASSWORD);
      expect(controller.logs.join('\n')).not.toContain(BMC_PASSWORD);
      expect(controller.logs.join('\n')).not.toContain(controller.token);
    });

    it('clears a password when updated to empty', async () => {
      const sw = await api.call('updateSwitch', {
        switch: { id: '10.0.0.1', password: '' },
        updateMask: ['password'],
      });
      expect(sw.hasPassword).toBe(false);
    });
  });

  describe('restart', () => {
    it('keeps every object and the admin token across a restart', async () => {
      const before = {
        nodes: await api.call('listNodes', {}),
        switches: await api.call('listSwitches', {}),
        aggregates: await api.call('listAggregates', {}),
        flavors: await api.call('listFlavors', { pageSize: 100 }),
      };
      api.close();
      await controller.stop();
      controller = await startTestController({ dataDir: controller.dataDir, database: controller.database });
      api = new InventoryApi(controller.address, controller.token);
      expect(await api.call('listNodes', {})).toEqual(before.nodes);
      expect(await api.call('listSwitches', {})).toEqual(before.switches);
      expect(await api.call('listAggregates', {})).toEqual(before.aggregates);
      expect(await api.call('listFlavors', { pageSize: 100 })).toEqual(before.flavors);
      expect((await api.call('getNode', { id: 'node-525400000101' })).hasBmcPassword).toBe(true);
    });
  });
});
