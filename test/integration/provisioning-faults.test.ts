/**
 * The provisioning flows when things go wrong, on virtual nodes with a real
 * controller process on PostgreSQL: the controller SIGKILLed at every step
 * of a deploy and of a delete, an agent killed in the middle of writing, a
 * BMC that stopped answering, and a switch that refuses the port move.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as capturePb from '../../build/gen/ingot/v1/capture.ts';
import { InstanceState } from '../../build/gen/ingot/v1/instance.ts';
import { NetbootState, ProvisionState } from '../../build/gen/ingot/v1/inventory.ts';
import { DELETE_STEPS, DEPLOY_STEPS } from '../../controller/src/domain/flows.ts';
import { deviceDigest } from '../../tools/lab/lab-image.ts';
import type { VirtualNode } from '../../tools/lab/virtual-lab.ts';
import { eventually, imageApi } from '../support/agent.ts';
import { ServiceApi } from '../support/controller.ts';
import {
  PROJECT,
  type ProvisioningLab,
  startProvisioningLab,
  watchCapture,
} from '../support/provisioning-lab.ts';

const SLOW_MS = 600_000;

describe('provisioning faults', () => {
  let p: ProvisioningLab;

  beforeAll(async () => {
    p = await startProvisioningLab({
      count: 2,
      backend: 'postgres',
      diskMiB: 256,
      provisioning: { agentTimeoutMs: 10_000, stallTimeoutMs: 6_000, powerCycles: 2, leaseMs: 3_000 },
    });
  }, SLOW_MS);

  afterAll(async () => {
    await p?.stop();
  }, SLOW_MS);

  const nodeOf = (name: string): VirtualNode => {
    const node = p.lab.nodes.find((n) => n.name === name);
    if (!node) throw new Error(`no lab node ${name}`);
    return node;
  };
  const finalOf = async (id: string, untilDeleted = false) => (await p.watch(id, { untilDeleted })).at(-1);
  /** The first `step started` log line for this instance and step, from the controller running now. */
  const stepStarted = (instance: string, step: string) =>
    eventually(`step ${step} of ${instance}`, () =>
      p.controller.logs().find((l) => l.msg === 'step started' && l.instance === instance && l.step === step),
    );

  it(
    'resumes a deploy and a delete after the controller is SIGKILLed at each step in turn',
    async () => {
      const rounds = Math.max(DEPLOY_STEPS.length, DELETE_STEPS.length);
      for (let k = 0; k < rounds; k++) {
        const deployStep = DEPLOY_STEPS[k];
        const deleteStep = DELETE_STEPS[k];
        const created = await p.boot(`crash-${k}`);
        if (deployStep) {
          await stepStarted(created.id, deployStep);
          await p.killController();
          await p.restartController();
        }
        const deployed = await finalOf(created.id);
        expect(deployed?.instance?.reason, `deploy killed at ${deployStep}`).toBe('');
        expect(deployed?.instance?.state).toBe(InstanceState.INSTANCE_STATE_ACTIVE);
        const node = nodeOf(deployed?.instance?.hostName ?? '');
        expect(await deviceDigest(node.disk, p.image.sizeBytes)).toBe(p.image.sha256);

        await p.instances.call('deleteInstance', { id: created.id });
        if (deleteStep) {
          await stepStarted(created.id, deleteStep);
          await p.killController();
          await p.restartController();
        }
        expect((await finalOf(created.id, true))?.deleted, `delete killed at ${deleteStep}`).toBe(true);
        const freed = await p.inventory.call('getNode', { id: node.name });
        expect(freed.provisionState).toBe(ProvisionState.PROVISION_STATE_AVAILABLE);
        expect(freed.netbootState).toBe(NetbootState.NETBOOT_STATE_UNSPECIFIED);
      }
    },
    SLOW_MS,
  );

  it(
    'a capture into the store whose agent stalls mid-stream: a power cycle, a new task on a new port, the image ACTIVE',
    async () => {
      const node = p.lab.nodes[0] as VirtualNode;
      const captures = new ServiceApi(capturePb.CaptureServiceService, capturePb, p.address, p.token);
      let agentPid: number | undefined;
      try {
        const created = await captures.call('createCapture', { node: node.name, image: { name: 'stalled' } });
        const seen = await watchCapture(p.address, p.token, created.id, (c) => {
          const done = c.progress?.bytesDone ?? 0;
          if (agentPid === undefined && done > 0 && done < (c.progress?.bytesTotal ?? 0)) {
            agentPid = agentOf(p, node);
            if (agentPid) process.kill(agentPid, 'SIGSTOP');
          }
        });
        expect(agentPid).toBeDefined();
        const last = seen.at(-1) as capturePb.Capture;
        expect(last.reason).toBe('');
        expect(last.state).toBe(capturePb.CaptureState.CAPTURE_STATE_SUCCEEDED);
        expect(last.taskId).not.toBe(seen.find((c) => c.taskId)?.taskId);
        const capturing = last.steps.find((s) => s.name === 'capturing');
        expect(capturing?.message).toMatch(/after power cycles for: no progress for 6 s/);
        const after = await p.inventory.call('getNode', { id: node.name });
        expect(after.provisionState).toBe(ProvisionState.PROVISION_STATE_AVAILABLE);
        const stored = await imageApi(p.address, p.token).call('getImage', { id: 'stalled' });
        expect(stored.sha256).toBe(await deviceDigest(node.disk, 256 << 20));
      } finally {
        // The stopped agent went with the power cycle (or goes with the lab): its PID is not ours to reuse.
        captures.close();
      }
    },
    SLOW_MS,
  );

  it(
    'power-cycles a node whose agent was killed in the middle of the deploy, and the deploy completes',
    async () => {
      // Big enough that the write takes a while.
      const big = await p.addImage('big-image', 192);
      const created = await p.boot('agent-dies', { image: 'big-image' });
      const node = nodeOf(created.hostName);
      // Stop the agent at its first report of bytes written, then kill it: the write is cut for sure.
      let agentPid: number | undefined;
      const watching = p.watch(created.id, {
        onEvent: (e) => {
          const done = e.instance?.progress?.bytesDone ?? 0;
          if (agentPid === undefined && e.progressOnly && done > 0 && done < big.sizeBytes) {
            agentPid = agentOf(p, node);
            if (agentPid) process.kill(agentPid, 'SIGSTOP');
          }
        },
      });
      await eventually('the agent stopped mid-write', () => agentPid);
      process.kill(agentPid as number, 'SIGKILL');
      const final = (await watching).at(-1)?.instance;
      expect(final?.reason).toBe('');
      expect(final?.state).toBe(InstanceState.INSTANCE_STATE_ACTIVE);
      expect(final?.retries).toBe(1);
      const deploying = final?.steps.find((s) => s.name === 'deploying');
      expect(deploying?.message).toMatch(/^image written: .*; after power cycles for: no progress for 6 s/);
      expect(await deviceDigest(node.disk, big.sizeBytes)).toBe(big.sha256);
      await p.instances.call('deleteInstance', { id: created.id });
      expect((await finalOf(created.id, true))?.deleted).toBe(true);
    },
    SLOW_MS,
  );

  it(
    'power-cycles a node whose agent never calls in, then gives up: ERROR with how far the node got',
    async () => {
      // The node boots, but its bootstrap has no agent to run.
      const node = p.lab.nodes[0] as VirtualNode;
      const config = readFileSync(node.configFile, 'utf8');
      writeFileSync(
        node.configFile,
        JSON.stringify({ ...JSON.parse(config), agentBinary: '/nonexistent/ingot-agent' }),
      );
      let created: Awaited<ReturnType<ProvisioningLab['boot']>>;
      try {
        await p.inventory.call('updateNode', {
          node: { id: p.lab.nodes[1]?.name, maintenance: true, maintenanceReason: 'kept out of this test' },
          updateMask: ['maintenance', 'maintenance_reason'],
        });
        created = await p.boot('no-agent');
        expect(created.hostName).toBe(node.name);
        const final = (await finalOf(created.id))?.instance;
        expect(final?.state).toBe(InstanceState.INSTANCE_STATE_ERROR);
        expect(final?.step).toBe('deploying');
        expect(final?.retries).toBe(2);
        expect(final?.reason).toMatch(
          /^deploying: the agent did not call in within 10 s of the power-on \(netboot: boot configuration fetched, the agent never connected\); gave up after 2 power cycles/,
        );
        // Three boots: the power-on and two power cycles.
        expect(node.bmc.hookCalls().filter((c) => c.includes('boot pxe')).length).toBeGreaterThanOrEqual(3);
        const enrolled = await p.inventory.call('getNode', { id: node.name });
        expect(enrolled.provisionState).toBe(ProvisionState.PROVISION_STATE_DEPLOY_FAILED);
        expect(enrolled.netbootState).toBe(NetbootState.NETBOOT_STATE_UNSPECIFIED);
        expect(node.bmc.nodePid()).toBeUndefined();
      } finally {
        writeFileSync(node.configFile, config);
        await p.inventory.call('updateNode', {
          node: { id: p.lab.nodes[1]?.name, maintenance: false },
          updateMask: ['maintenance'],
        });
      }
      await p.instances.call('deleteInstance', { id: created.id });
      expect((await finalOf(created.id, true))?.deleted).toBe(true);
    },
    SLOW_MS,
  );

  it(
    'puts the instance in ERROR when the BMC does not answer, with the node left safe; delete cleans up later',
    async () => {
      for (const node of p.lab.nodes) node.bmc.pause();
      let created: Awaited<ReturnType<ProvisioningLab['boot']>>;
      try {
        created = await p.boot('bmc-down');
        const final = (await finalOf(created.id))?.instance;
        expect(final?.state).toBe(InstanceState.INSTANCE_STATE_ERROR);
        expect(final?.step).toBe('power-on');
        expect(final?.reason).toMatch(/^power-on: .*BMC/);
        const node = await p.inventory.call('getNode', { id: created.hostName });
        expect(node.provisionState).toBe(ProvisionState.PROVISION_STATE_DEPLOY_FAILED);
        expect(node.lastError).toBe(final?.reason);
        // Safe: no netboot entry, port on the service network.
        expect(node.netbootState).toBe(NetbootState.NETBOOT_STATE_UNSPECIFIED);
        const service = await p.networks.call('getNetwork', { id: 'service' });
        expect(node.networkId).toBe(service.id);
      } finally {
        for (const node of p.lab.nodes) node.bmc.resume();
      }
      await p.instances.call('deleteInstance', { id: created.id });
      expect((await finalOf(created.id, true))?.deleted).toBe(true);
      const node = await p.inventory.call('getNode', { id: created.hostName });
      expect(node.provisionState).toBe(ProvisionState.PROVISION_STATE_AVAILABLE);
    },
    SLOW_MS,
  );

  it(
    'puts the instance in ERROR when the switch refuses the move to the project network, the port unchanged',
    async () => {
      await p.networks.call('createNetwork', {
        network: { name: 'acme-broken', projectId: PROJECT, vlanId: 99, bridge: 'br-missing' },
      });
      const created = await p.instances.call('createInstance', {
        name: 'switch-refuses',
        request: {
          project: PROJECT,
          flavor: 'bm.lab',
          image: 'lab-image',
          hints: { compute_type: 'bare_metal' },
        },
        network: 'acme-broken',
      });
      const final = (await finalOf(created.id))?.instance;
      expect(final?.state).toBe(InstanceState.INSTANCE_STATE_ERROR);
      expect(final?.step).toBe('tenant-network');
      expect(final?.reason).toContain('br-missing');
      const node = nodeOf(created.hostName);
      const port = await p.lab.netns.exec(p.lab.switchNs, ['ip', '-o', 'link', 'show', node.switchPort]);
      expect(port.stdout).toContain('master br-svc');
      const enrolled = await p.inventory.call('getNode', { id: node.name });
      expect(enrolled.netbootState).toBe(NetbootState.NETBOOT_STATE_UNSPECIFIED);
      expect(node.bmc.nodePid()).toBeUndefined();
      await p.instances.call('deleteInstance', { id: created.id });
      expect((await finalOf(created.id, true))?.deleted).toBe(true);
    },
    SLOW_MS,
  );
});

/** The agent the virtual node runs now: the PID its log gave when it started it. */
function agentOf(p: ProvisioningLab, node: VirtualNode): number | undefined {
  const started = [...p.lab.nodeLog(node).matchAll(/agent started \(pid (\d+)\)/g)].at(-1);
  return started ? Number(started[1]) : undefined;
}
