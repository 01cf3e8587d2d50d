/**
 * `bmctl image capture <node>` on virtual bare-metal nodes: the conductor
 * netboots a prepared node, its real agent streams the disk (partitioned
 * with sfdisk) into the image store's capture port, and the node is put back
 * as it was. The captured image then deploys to another node byte for byte,
 * and that node boots it. Failures leave the node as it was, powered off.
 */
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as capturePb from '../../build/gen/ingot/v1/capture.ts';
import { InstanceState } from '../../build/gen/ingot/v1/instance.ts';
import { PowerState, ProvisionState } from '../../build/gen/ingot/v1/inventory.ts';
import { CAPTURE_STEPS } from '../../controller/src/domain/flows.ts';
import { deviceDigest } from '../../tools/lab/lab-image.ts';
import type { VirtualNode } from '../../tools/lab/virtual-lab.ts';
import { eventually } from '../support/agent.ts';
import { bmctlAgainst } from '../support/bmctl.ts';
import { ServiceApi } from '../support/controller.ts';
import {
  PROJECT_NETWORK,
  type ProvisioningLab,
  startProvisioningLab,
  watchCapture,
} from '../support/provisioning-lab.ts';

const SLOW_MS = 300_000;
const MIB = 1 << 20;
/** The prepared disk's one partition: 1 MiB to 24 MiB, over the 16 MiB lab image written at its start. */
const PARTITION_END = 24 * MIB;

describe('capturing a node’s disk into an image', () => {
  let p: ProvisioningLab;
  let captures: ServiceApi<typeof capturePb.CaptureServiceService>;
  const bmctl = bmctlAgainst(() => ({ address: p.address, dataDir: join(dirname(p.netbootDir), 'data') }), {
    cwd: () => dirname(p.netbootDir),
  });
  let source: VirtualNode;

  beforeAll(async () => {
    p = await startProvisioningLab({ count: 2 });
    captures = new ServiceApi(capturePb.CaptureServiceService, capturePb, p.address, p.token);
    source = p.lab.nodes[0] as VirtualNode;
    // An operator's prepared server: the lab OS at the start of the disk, an MBR partition over it.
    execFileSync('dd', [`if=${p.image.path}`, `of=${source.disk}`, 'bs=1M', 'conv=notrunc,fsync'], {
      stdio: 'ignore',
    });
    execFileSync('sfdisk', ['-q', '--no-reread', source.disk], {
      input: `label: dos\nstart=2048, size=${PARTITION_END / 512 - 2048}, type=83, bootable\n`,
    });
    // On its project network (where the operator prepared it), and in maintenance, so that the boot
    // below lands on the other node.
    await p.networks.call('setNodeNetwork', { node: source.name, network: PROJECT_NETWORK });
    await p.inventory.call('updateNode', {
      node: { id: source.name, maintenance: true, maintenanceReason: 'preparing an image' },
      updateMask: ['maintenance', 'maintenance_reason'],
    });
  }, SLOW_MS);

  afterAll(async () => {
    captures?.close();
    await p?.stop();
  }, SLOW_MS);

  it(
    'captures to the last partition into the store, puts the node back, and the image deploys byte for byte',
    async () => {
      const before = await p.inventory.call('getNode', { id: source.name });
      expect(before.networkId).not.toBe('');
      const sourceDigest = await deviceDigest(source.disk, PARTITION_END);
      const out = await bmctl.ok('image', 'capture', source.name, '--name', 'golden', '--to-last-partition');
      expect(out).toMatch(/state\s+succeeded/);
      expect(out).toContain('netboot-cleanup');

      const after = await p.inventory.call('getNode', { id: source.name });
      expect(after.provisionState).toBe(before.provisionState);
      expect(after.powerState).toBe(PowerState.POWER_STATE_OFF);
      expect(after.networkId).toBe(before.networkId);
      expect(after.lastError).toBe('');
      // The disk was only read.
      expect(await deviceDigest(source.disk, PARTITION_END)).toBe(sourceDigest);

      const shown = await bmctl.json<{ status: string; size_bytes: number; sha256: string }>(
        'image',
        'show',
        'golden',
      );
      expect(shown).toMatchObject({
        status: 'IMAGE_STATUS_ACTIVE',
        size_bytes: PARTITION_END,
        sha256: sourceDigest,
      });

      const instance = await p.boot('from-golden', { image: 'golden' });
      const events = await p.watch(instance.id);
      const last = events.at(-1)?.instance;
      expect(last?.reason).toBe('');
      expect(last?.state).toBe(InstanceState.INSTANCE_STATE_ACTIVE);
      expect(last?.hostName).not.toBe(source.name);
      const target = p.lab.nodes.find((n) => n.name === last?.hostName) as VirtualNode;
      expect(await deviceDigest(target.disk, PARTITION_END)).toBe(sourceDigest);
      await eventually(`${target.name} booted the captured image`, () =>
        p.lab.nodeLog(target).includes('booted ingot-lab-os from disk') ? true : undefined,
      );
    },
    SLOW_MS,
  );

  it(
    'records every step of the capture, and streams progress to watchers',
    async () => {
      const created = await captures.call('createCapture', {
        node: source.name,
        image: { name: 'golden-zstd' },
        spec: { compress: true, toLastPartition: true },
      });
      expect(created.state).toBe(capturePb.CaptureState.CAPTURE_STATE_RUNNING);
      const seen = await watchCapture(p.address, p.token, created.id);
      const last = seen.at(-1) as capturePb.Capture;
      expect(last.reason).toBe('');
      expect(last.state).toBe(capturePb.CaptureState.CAPTURE_STATE_SUCCEEDED);
      expect(last.steps.map((s) => [s.name, s.state])).toEqual(CAPTURE_STEPS.map((s) => [s, 'done']));
      expect(new Set(seen.map((c) => c.step))).toContain('capturing');
      expect(last.outcome?.bytesRead).toBe(PARTITION_END);
      expect(last.outcome?.bytesSent).toBeLessThan(PARTITION_END);
      const image = await bmctl.json<{ status: string; virtual_size_bytes: number; disk_format: string }>(
        'image',
        'show',
        'golden-zstd',
      );
      expect(image).toMatchObject({
        status: 'IMAGE_STATUS_ACTIVE',
        disk_format: 'DISK_FORMAT_RAW_ZSTD',
        virtual_size_bytes: PARTITION_END,
      });
    },
    SLOW_MS,
  );

  it(
    'survives a SIGKILLed controller: restarted, it replaces the task whose capture port died and finishes',
    async () => {
      const created = await captures.call('createCapture', {
        node: source.name,
        image: { name: 'golden-restart' },
        spec: { toLastPartition: true },
      });
      const before = await eventually('the capture powering the node on', async () => {
        const c = await captures.call('getCapture', { id: created.id });
        return c.step === 'power-on' || c.step === 'capturing' ? c : undefined;
      });
      await p.killController();
      await p.restartController();
      const last = (await watchCapture(p.address, p.token, created.id)).at(-1) as capturePb.Capture;
      expect(last.reason).toBe('');
      expect(last.state).toBe(capturePb.CaptureState.CAPTURE_STATE_SUCCEEDED);
      // The first task streamed (or would have) to the dead controller's port: a new one did the work.
      expect(last.taskId).not.toBe(before.taskId);
      const image = await bmctl.json<{ status: string; sha256: string }>('image', 'show', 'golden-restart');
      expect(image).toMatchObject({
        status: 'IMAGE_STATUS_ACTIVE',
        sha256: await deviceDigest(source.disk, PARTITION_END),
      });
      const node = await p.inventory.call('getNode', { id: source.name });
      expect(node.provisionState).not.toBe(ProvisionState.PROVISION_STATE_CAPTURING);
    },
    SLOW_MS,
  );

  it(
    'fails cleanly: the agent refuses the disk; the node is back as it was, powered off, the image KILLED',
    async () => {
      const before = await p.inventory.call('getNode', { id: source.name });
      const created = await captures.call('createCapture', {
        node: source.name,
        image: { name: 'not-a-disk' },
        spec: { disk: '/dev/nonexistent-disk' },
      });
      const seen = await watchCapture(p.address, p.token, created.id);
      const last = seen.at(-1) as capturePb.Capture;
      expect(last.state).toBe(capturePb.CaptureState.CAPTURE_STATE_FAILED);
      expect(last.step).toBe('capturing');
      expect(last.reason).toMatch(/capturing: the agent's capture failed: DISK_NOT_FOUND/);
      const node = await p.inventory.call('getNode', { id: source.name });
      expect(node.provisionState).toBe(before.provisionState);
      expect(node.networkId).toBe(before.networkId);
      expect(node.lastError).toContain(last.reason);
      await eventually('the node powered off', async () =>
        (await p.inventory.call('getNode', { id: source.name })).powerState === PowerState.POWER_STATE_OFF
          ? true
          : undefined,
      );
      const image = await bmctl.json<{ status: string; status_reason: string }>(
        'image',
        'show',
        'not-a-disk',
      );
      expect(image.status).toBe('IMAGE_STATUS_KILLED');
      expect(image.status_reason).not.toBe('');
    },
    SLOW_MS,
  );

  it('refuses a node that holds an instance, bad requests, and unknown nodes', async () => {
    const busy = p.lab.nodes.find((n) => n.name !== source.name) as VirtualNode;
    const held = await p.inventory.call('getNode', { id: busy.name });
    expect(held.provisionState).toBe(ProvisionState.PROVISION_STATE_ACTIVE);
    expect(await captures.fail('createCapture', { node: busy.name, image: { name: 'nope' } })).toMatchObject({
      code: grpc.status.FAILED_PRECONDITION,
      reason: 'NODE_BUSY',
    });
    expect(await captures.fail('createCapture', { node: source.name })).toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      violations: [expect.objectContaining({ field: 'spec.capture.image' })],
    });
    expect(
      await captures.fail('createCapture', {
        node: source.name,
        spec: { receiver: '127.0.0.1:9', compress: true },
      }),
    ).toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      violations: [expect.objectContaining({ field: 'spec.capture.compress' })],
    });
    expect(
      await captures.fail('createCapture', { node: 'no-such-node', image: { name: 'nope' } }),
    ).toMatchObject({
      code: grpc.status.NOT_FOUND,
    });
    // An image name already taken: nothing changes on the node.
    expect(
      await captures.fail('createCapture', { node: source.name, image: { name: 'golden' } }),
    ).toMatchObject({
      code: grpc.status.ALREADY_EXISTS,
    });
    expect((await p.inventory.call('getNode', { id: source.name })).provisionState).toBe(
      ProvisionState.PROVISION_STATE_AVAILABLE,
    );
    expect(await captures.fail('getCapture', { id: '01a21322-6a4b-7ce7-a8d2-b6a05fac8c80' })).toMatchObject({
      code: grpc.status.NOT_FOUND,
    });
    // Nothing was created by the refusals.
    expect((await bmctl.run('image', 'show', 'nope')).code).not.toBe(0);
    const r = await bmctl.run('image', 'capture', source.name);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('--name');
  });
});
