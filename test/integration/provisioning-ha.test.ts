/**
 * Two controllers on one PostgreSQL database, both looking for flows to
 * drive: each flow is driven by one of them at a time (the lease), and when
 * the one driving a flow dies, the other takes it over once the lease
 * expires and finishes it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InstanceState } from '../../build/gen/ingot/v1/instance.ts';
import { DEPLOY_STEPS } from '../../controller/src/domain/flows.ts';
import { eventually } from '../support/agent.ts';
import { instanceApi } from '../support/controller.ts';
import type { ControllerProcess } from '../support/process.ts';
import {
  FLAVOR,
  IMAGE,
  PROJECT,
  PROJECT_NETWORK,
  type ProvisioningLab,
  startProvisioningLab,
  watchInstance,
} from '../support/provisioning-lab.ts';

const SLOW_MS = 300_000;
const LEASE_MS = 3_000;

describe('provisioning with two controllers', () => {
  let p: ProvisioningLab;
  let peer: { process: ControllerProcess; address: string };

  beforeAll(async () => {
    p = await startProvisioningLab({
      count: 3,
      backend: 'postgres',
      provisioning: { leaseMs: LEASE_MS, scanIntervalMs: 200 },
    });
    peer = await p.startPeer();
  }, SLOW_MS);

  afterAll(async () => {
    await p?.stop();
  }, SLOW_MS);

  const bootVia = (address: string, name: string) =>
    instanceApi(address, p.token).call('createInstance', {
      name,
      request: { project: PROJECT, flavor: FLAVOR, image: IMAGE, hints: { compute_type: 'bare_metal' } },
      network: PROJECT_NETWORK,
    });

  it(
    'drives every flow with one controller at a time: each step recorded once, one after the other',
    async () => {
      const created = await Promise.all([
        bootVia(p.address, 'ha-1'),
        bootVia(peer.address, 'ha-2'),
        bootVia(p.address, 'ha-3'),
      ]);
      for (const instance of created) {
        const final = (await p.watch(instance.id)).at(-1)?.instance;
        expect(final?.reason).toBe('');
        expect(final?.state).toBe(InstanceState.INSTANCE_STATE_ACTIVE);
        const steps = final?.steps ?? [];
        expect(steps.map((s) => s.name)).toEqual([...DEPLOY_STEPS]);
        const time = (d: Date | undefined) => d?.getTime() ?? Number.NaN;
        for (let i = 1; i < steps.length; i++) {
          expect(time(steps[i]?.startTime)).toBeGreaterThanOrEqual(time(steps[i - 1]?.endTime));
        }
        // Nobody took over a live flow: one controller ran all its steps.
        expect(new Set(steps.map((s) => s.controller)).size).toBe(1);
      }
      for (const instance of created) {
        await p.instances.call('deleteInstance', { id: instance.id });
        expect((await p.watch(instance.id, { untilDeleted: true })).at(-1)?.deleted).toBe(true);
      }
    },
    SLOW_MS,
  );

  it(
    'finishes a flow whose controller died: the other takes it over once the lease expires',
    async () => {
      const created = await bootVia(p.address, 'ha-takeover');
      const bmc = p.lab.nodes.find((n) => n.name === created.hostName)?.bmc;
      if (!bmc) throw new Error(`no lab node ${created.hostName}`);
      const controllers = [
        { process: p.controller, address: p.address },
        { process: peer.process, address: peer.address },
      ];
      const started = (step: string) =>
        eventually(`the ${step} step`, () =>
          controllers.find((c) =>
            c.process
              .logs()
              .some((l) => l.msg === 'step started' && l.instance === created.id && l.step === step),
          ),
        );
      // While the agent writes, the BMC stops answering, so that the flow is caught in its next power
      // step (booting from disk), after the image is written: the rest no longer needs the agent,
      // which dials the first controller. Then the controller driving the flow dies.
      await started('deploying');
      bmc.pause();
      const driver = await started('boot-disk');
      await driver.process.kill();
      const killedAt = Date.now();
      bmc.resume();
      const survivor = controllers.find((c) => c !== driver) as (typeof controllers)[number];
      const final = (await watchInstance(survivor.address, p.token, created.id, {})).at(-1)?.instance;
      expect(final?.reason).toBe('');
      expect(final?.state).toBe(InstanceState.INSTANCE_STATE_ACTIVE);
      const steps = final?.steps ?? [];
      expect(steps.map((s) => s.name)).toEqual([...DEPLOY_STEPS]);
      expect(new Set(steps.map((s) => s.controller)).size).toBe(2);
      const takenOver = steps.find(
        (s) => s.message.startsWith('resumed') || s.controller !== steps[0]?.controller,
      );
      expect(takenOver).toBeDefined();
      // The survivor waited for the lease to run out.
      expect((takenOver?.endTime?.getTime() ?? 0) - killedAt).toBeGreaterThanOrEqual(LEASE_MS / 2);
    },
    SLOW_MS,
  );
});
