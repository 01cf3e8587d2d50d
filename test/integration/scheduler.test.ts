import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InstanceState } from '../../build/gen/ingot/v1/instance.ts';
import { createToken } from '../../controller/src/store/tokens.ts';
import {
  BACKENDS,
  InventoryApi,
  instanceApi,
  removeDataDir,
  schedulerApi,
  startTestController,
  type TestController,
} from '../support/controller.ts';

const BARE_METAL = { compute_type: 'bare_metal' };

describe.each(BACKENDS)('SchedulerService and InstanceService on %s', (backend) => {
  let controller: TestController;
  let inventory: InventoryApi;
  let instances: ReturnType<typeof instanceApi>;
  let scheduler: ReturnType<typeof schedulerApi>;
  let memberToken: string;

  const bmNode = (name: string, n: number, size: { cpus: number; ramMb: number; diskGb: number }) =>
    inventory.call('createNode', {
      node: {
        name,
        ip: `10.0.1.${n}`,
        mac: `52:54:00:00:02:${n.toString(16).padStart(2, '0')}`,
        bmcAddress: `10.0.2.${n}`,
        ...size,
      },
    });

  beforeAll(async () => {
    controller = await startTestController({ backend });
    inventory = new InventoryApi(controller.address, controller.token);
    instances = instanceApi(controller.address, controller.token);
    scheduler = schedulerApi(controller.address, controller.token);
    // The seed's setup: a default pool, a pool dedicated to the isolated project, bare metal outside both.
    await inventory.call('createProject', { project: { name: 'secure', isolated: true } });
    const common = await inventory.call('createProject', { project: { name: 'common' } });
    await inventory.call('createProject', { project: { name: 'lonely', isolated: true } });
    await inventory.call('createFlavor', {
      flavor: { name: 'bm.small', vcpus: 8, ramMb: 16384, diskGb: 500 },
    });
    await inventory.call('createFlavor', { flavor: { name: 'vm.small', vcpus: 2, ramMb: 4096, diskGb: 40 } });
    for (const name of ['compute-1', 'compute-2', 'secure-1']) {
      await inventory.call('createHost', { host: { name, vcpus: 8, ramMb: 8192, diskGb: 200 } });
    }
    await inventory.call('createAggregate', { aggregate: { name: 'default', availabilityZone: 'nova' } });
    await inventory.call('addAggregateHost', { aggregate: 'default', host: 'compute-1' });
    await inventory.call('addAggregateHost', { aggregate: 'default', host: 'compute-2' });
    await inventory.call('createAggregate', { aggregate: { name: 'secure-pool', availabilityZone: 'nova' } });
    await inventory.call('addAggregateHost', { aggregate: 'secure-pool', host: 'secure-1' });
    await inventory.call('setAggregateMetadata', { aggregate: 'secure-pool', set: { project_id: 'secure' } });
    await bmNode('bm-big', 1, { cpus: 16, ramMb: 65536, diskGb: 1000 });
    await bmNode('bm-small', 2, { cpus: 8, ramMb: 16384, diskGb: 500 });
    await bmNode('bm-maint', 3, { cpus: 8, ramMb: 16384, diskGb: 500 });
    await inventory.call('updateNode', {
      node: { id: 'bm-maint', maintenance: true, maintenanceReason: 'disk' },
      updateMask: ['maintenance', 'maintenance_reason'],
    });
    memberToken = await createToken(controller.db.fork(), {
      role: 'member',
      projectId: common.id,
      description: 'test',
    });
  });

  afterAll(async () => {
    for (const api of [inventory, instances, scheduler]) api?.close();
    await controller?.stop();
    if (controller) removeDataDir(controller.dataDir);
  });

  describe('SelectDestinations', () => {
    const select = (request: Record<string, unknown>, more: Record<string, unknown> = {}) =>
      scheduler.call('selectDestinations', { request: { flavor: 'vm.small', ...request }, ...more });

    it("places the seed's three cases", async () => {
      const isolated = await select({ project: 'secure' }, { count: 5 });
      expect(isolated.destinations.map((d) => d.name)).toEqual(['secure-1']);
      const bareMetal = await select(
        { project: 'secure', flavor: 'bm.small', hints: BARE_METAL },
        { count: 5 },
      );
      expect(bareMetal.destinations.map((d) => [d.kind, d.name])).toEqual([
        ['node', 'bm-small'],
        ['node', 'bm-big'],
      ]);
      const common = await select({ project: 'common' }, { count: 5 });
      expect(common.destinations.map((d) => d.name).sort()).toEqual(['compute-1', 'compute-2']);
      expect(common.candidates).toBe(2);
    });

    it('explains every filter and names the one that emptied the list', async () => {
      const answer = await select({ project: 'lonely' }, { explain: true });
      expect(answer.destinations).toEqual([]);
      expect(answer.noValidHost).toContain('PlacementFilter');
      expect(answer.noValidHost).toContain('project lonely is isolated but no aggregate is dedicated to it');
      expect(answer.trace).toHaveLength(1);
      expect(answer.trace[0]).toMatchObject({ filter: 'PlacementFilter', hostsIn: 6, hostsOut: 0 });
      const full = await select(
        { project: 'common', flavor: 'bm.small', hints: BARE_METAL },
        { explain: true },
      );
      expect(full.trace.map((s) => s.filter)).toHaveLength(7);
      expect(full.trace.at(-1)?.rejected).toEqual([{ host: 'bm-maint', reason: 'in maintenance' }]);
    });

    it('validates its request', async () => {
      expect(
        (await scheduler.fail('selectDestinations', { request: { project: 'common' } })).violations,
      ).toEqual([{ field: 'request.flavor', description: 'is required (a flavor id or name)' }]);
      expect((await scheduler.fail('selectDestinations', {})).violations[0]?.field).toBe('request');
      const noProject = await scheduler.fail('selectDestinations', { request: { flavor: 'vm.small' } });
      expect(noProject.violations[0]?.field).toBe('request.project');
      const badHints = await scheduler.fail('selectDestinations', {
        request: { project: 'common', flavor: 'vm.small', hints: { 'bad key': 'x' } },
      });
      expect(badHints.violations[0]?.field).toBe('request.hints');
      const count = await scheduler.fail('selectDestinations', {
        request: { project: 'common', flavor: 'vm.small' },
        count: 101,
      });
      expect(count.violations[0]?.field).toBe('count');
      expect(
        (await scheduler.fail('selectDestinations', { request: { project: 'ghost', flavor: 'vm.small' } }))
          .code,
      ).toBe(status.NOT_FOUND);
      expect(
        (await scheduler.fail('selectDestinations', { request: { project: 'common', flavor: 'xl' } })).code,
      ).toBe(status.NOT_FOUND);
    });

    it('is for admins only', async () => {
      const err = await scheduler
        .withToken(memberToken)
        .fail('selectDestinations', { request: { flavor: 'vm.small' } });
      expect(err.code).toBe(status.PERMISSION_DENIED);
    });
  });

  describe('CreateInstance claims its host', () => {
    const boot = (name: string, request: Record<string, unknown>) =>
      instances.call('createInstance', { name, request: { image: 'ubuntu-24.04', ...request } });

    it('gives a bare-metal instance the smallest free node and binds the node to it', async () => {
      const first = await boot('db-1', { project: 'secure', flavor: 'bm.small', hints: BARE_METAL });
      expect(first).toMatchObject({
        name: 'db-1',
        state: InstanceState.INSTANCE_STATE_SCHEDULED,
        hostKind: 'node',
        hostName: 'bm-small',
        image: 'ubuntu-24.04',
        vcpus: 8,
        ramMb: 16384,
        diskGb: 500,
        hints: BARE_METAL,
      });
      const node = await inventory.call('getNode', { id: 'bm-small' });
      expect(node.instanceId).toBe(first.id);
      const second = await boot('db-2', { project: 'secure', flavor: 'bm.small', hints: BARE_METAL });
      expect(second.hostName).toBe('bm-big');
    });

    it('answers RESOURCE_EXHAUSTED with the reason when no node is left', async () => {
      const err = await instances.fail('createInstance', {
        name: 'db-3',
        request: { project: 'secure', flavor: 'bm.small', image: 'ubuntu-24.04', hints: BARE_METAL },
      });
      expect(err).toMatchObject({ code: status.RESOURCE_EXHAUSTED, reason: 'NO_VALID_HOST' });
      expect(err.message).toMatch(/^no valid host: NodeStateFilter rejected the last 3 host\(s\)/);
      expect(err.message).toContain('already claimed by instance');
      expect(err.message).toContain('bm-maint (in maintenance)');
    });

    it('keeps a claimed node in the inventory', async () => {
      expect(await inventory.fail('deleteNode', { id: 'bm-small' })).toMatchObject({
        code: status.FAILED_PRECONDITION,
        reason: 'NODE_IN_USE',
      });
    });

    it('frees the node on delete, so the next boot gets it', async () => {
      await instances.call('deleteInstance', { id: 'db-1', project: 'secure' });
      expect((await inventory.call('getNode', { id: 'bm-small' })).instanceId).toBe('');
      const again = await boot('db-3', { project: 'secure', flavor: 'bm.small', hints: BARE_METAL });
      expect(again.hostName).toBe('bm-small');
      expect((await instances.fail('getInstance', { id: 'db-1', project: 'secure' })).code).toBe(
        status.NOT_FOUND,
      );
    });

    it('sees inventory changes at once', async () => {
      await bmNode('bm-new', 4, { cpus: 8, ramMb: 16384, diskGb: 500 });
      expect(
        (await boot('db-4', { project: 'common', flavor: 'bm.small', hints: BARE_METAL })).hostName,
      ).toBe('bm-new');
    });

    it('fills a hypervisor host up to its overcommit ratio and no further', async () => {
      // secure-1: 8192 MiB × 1.5 = 12288 MiB, three 4096 MiB VMs.
      for (const name of ['vm-1', 'vm-2', 'vm-3']) {
        expect((await boot(name, { project: 'secure', flavor: 'vm.small' })).hostName).toBe('secure-1');
      }
      const full = await instances.fail('createInstance', {
        name: 'vm-4',
        request: { project: 'secure', flavor: 'vm.small', image: 'ubuntu-24.04' },
      });
      expect(full.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(full.message).toContain('RamFilter');
      expect(full.message).toContain('secure-1 (has 0 MiB RAM free, the flavor needs 4096)');
      await instances.call('deleteInstance', { id: 'vm-2', project: 'secure' });
      expect((await boot('vm-4', { project: 'secure', flavor: 'vm.small' })).hostName).toBe('secure-1');
    });

    it('spreads VMs of a project without an aggregate over the default pool', async () => {
      const a = await boot('web-1', { project: 'common', flavor: 'vm.small' });
      const b = await boot('web-2', { project: 'common', flavor: 'vm.small' });
      expect([a.hostName, b.hostName].sort()).toEqual(['compute-1', 'compute-2']);
    });

    it('validates names, images and duplicates', async () => {
      const dup = await instances.fail('createInstance', {
        name: 'web-1',
        request: { project: 'common', flavor: 'vm.small', image: 'x' },
      });
      expect(dup).toMatchObject({ code: status.ALREADY_EXISTS, metadata: { field: 'name', value: 'web-1' } });
      expect(
        (
          await instances.fail('createInstance', {
            name: 'bad name',
            request: { project: 'common', flavor: 'vm.small', image: 'x' },
          })
        ).violations[0]?.field,
      ).toBe('name');
      const noImage = await instances.fail('createInstance', {
        name: 'ok',
        request: { project: 'common', flavor: 'vm.small' },
      });
      expect(noImage.violations).toEqual([{ field: 'request.image', description: 'is required' }]);
    });

    it('lists instances per project and pages through them', async () => {
      const secure = await instances.call('listInstances', { project: 'secure' });
      expect(secure.instances.map((i) => i.name)).toEqual(['db-2', 'db-3', 'vm-1', 'vm-3', 'vm-4']);
      const all = await instances.call('listInstances', { pageSize: 4 });
      expect(all.instances).toHaveLength(4);
      const rest = await instances.call('listInstances', { pageSize: 4, pageToken: all.nextPageToken });
      expect(all.instances.length + rest.instances.length).toBe(8);
    });
  });

  describe('project members', () => {
    it('boot in their own project and see only its instances', async () => {
      const member = instanceApi(controller.address, memberToken);
      try {
        const mine = await member.call('createInstance', {
          name: 'mine',
          request: { flavor: 'vm.small', image: 'x' },
        });
        expect((await inventory.call('getProject', { id: 'common' })).id).toBe(mine.projectId);
        const listed = await member.call('listInstances', {});
        expect(listed.instances.map((i) => i.name).sort()).toEqual(['db-4', 'mine', 'web-1', 'web-2']);
        expect((await member.call('getInstance', { id: 'mine' })).name).toBe('mine');
        const secureOne = (await instances.call('listInstances', { project: 'secure' })).instances[0];
        expect((await member.fail('getInstance', { id: secureOne?.id ?? '' })).code).toBe(status.NOT_FOUND);
        expect((await member.fail('deleteInstance', { id: secureOne?.id ?? '' })).code).toBe(
          status.NOT_FOUND,
        );
        const other = await member.fail('createInstance', {
          name: 'x',
          request: { project: 'secure', flavor: 'vm.small', image: 'x' },
        });
        expect(other.code).toBe(status.PERMISSION_DENIED);
        expect((await member.fail('listInstances', { project: 'secure' })).code).toBe(
          status.PERMISSION_DENIED,
        );
        await member.call('deleteInstance', { id: 'mine' });
      } finally {
        member.close();
      }
    });
  });
});
