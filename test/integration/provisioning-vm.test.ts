/**
 * `nova boot` on a real (virtual) machine: a QEMU VM (TCG) whose BMC is ipmi_sim, whose NIC is a
 * tap on the lab's switch and whose firmware is SeaBIOS with iPXE. The controller powers it on by
 * IPMI; it PXE-boots through the controller's dnsmasq and iPXE script into the bootstrap image
 * (bootstrap/), whose init downloads and runs the agent; the agent writes the VM test image
 * (tools/lab/test-image.sh) to /dev/vda; the controller moves the port to the project network and
 * resets the VM to boot from disk; the deployed system prints its marker on the serial console
 * and answers ping on the project network. Then a delete wipes the disk and powers the VM off.
 */
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InstanceState } from '../../build/gen/ingot/v1/instance.ts';
import { PowerState, ProvisionState } from '../../build/gen/ingot/v1/inventory.ts';
import { type DELETE_STEPS, DEPLOY_STEPS } from '../../controller/src/domain/flows.ts';
import { deviceDigest } from '../../tools/lab/lab-image.ts';
import type { Probe, VirtualNode } from '../../tools/lab/virtual-lab.ts';
import { eventually } from '../support/agent.ts';
import { type ProvisioningLab, startProvisioningLab } from '../support/provisioning-lab.ts';
import { TEST_IMAGE_MARKER } from '../support/vm-images.ts';

const SLOW_MS = 300_000;

describe('provisioning on a QEMU virtual machine', () => {
  let p: ProvisioningLab | undefined;
  let probe: Probe;
  let node: VirtualNode;
  const qemuPids = new Set<number>();
  const lab = () => {
    if (!p) throw new Error('the lab did not start');
    return p;
  };
  /** The VM's serial console so far, for failure messages and checks. */
  const serial = () => lab().lab.nodeLog(node);
  const address = () => node.projectIp.split('/')[0] as string;

  beforeAll(async () => {
    // A VM that never calls in costs one power cycle, then the flow fails instead of waiting 10 min.
    p = await startProvisioningLab({
      count: 1,
      vm: true,
      provisioning: { agentTimeoutMs: 180_000, powerCycles: 1 },
    });
    probe = await p.lab.addProbe('br-proj');
    node = p.lab.nodes[0] as VirtualNode;
  }, SLOW_MS);

  afterAll(async () => {
    await p?.stop();
  }, SLOW_MS);

  it(
    'boots an instance: IPMI power-on, PXE, bootstrap, agent, image on /dev/vda, project network, disk boot',
    async () => {
      const { instances, image, inventory } = lab();
      const created = await lab().boot('vm1');
      expect(created.hostName).toBe(node.name);
      const events = await lab().watch(created.id, {
        onEvent: () => {
          const pid = node.bmc.nodePid();
          if (pid) qemuPids.add(pid);
        },
      });
      const last = events.at(-1)?.instance;
      if (last?.state !== InstanceState.INSTANCE_STATE_ACTIVE)
        throw new Error(`instance ended ${last?.state}: ${last?.reason}\nserial console:\n${serial()}`);
      expect(last.steps.map((s) => [s.name, s.state])).toEqual(DEPLOY_STEPS.map((name) => [name, 'done']));
      expect(events.some((e) => e.progressOnly && (e.instance?.progress?.bytesDone ?? 0) > 0)).toBe(true);

      // What the VM went through, on its serial console: the bootstrap image, then the deployed disk.
      const marker = new RegExp(
        `${TEST_IMAGE_MARKER} up on ${node.mac} at ${address().replace(/\./g, '\\.')}`,
      );
      await eventually('the deployed system to print its marker', () =>
        marker.test(serial()) ? true : undefined,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\nserial console:\n${serial()}`);
      });
      const log = serial();
      const steps = [
        /=== .*power on, boot order n/,
        /Booting from ROM/,
        /\/boot\/vmlinuz\.\.\. ok/,
        /ingot-init: network up on eth0: [\d.]+\/24/,
        /ingot-init: agent downloaded \(\d+ bytes\), sha256 [0-9a-f]{64} verified/,
        /ingot-init: starting the agent/,
        /=== .*power on, boot order c/,
        /Booting from Hard Disk/,
        marker,
      ];
      let at = 0;
      for (const step of steps) {
        const found = step.exec(log.slice(at));
        expect(found, `${step} after offset ${at} of the serial console:\n${log}`).not.toBeNull();
        at += (found?.index ?? 0) + (found?.[0].length ?? 0);
      }
      // The agent token is on the kernel command line; the console never shows it.
      expect(log).not.toMatch(/ingot\.token=(?!set\b)\S/);

      // The image is on the VM's disk byte for byte; the BMC boots it from disk; it answers on the project network.
      expect(await deviceDigest(node.diskFile, image.sizeBytes)).toBe(image.sha256);
      expect(node.bmc.bootDevice()).toBe('default');
      expect(node.bmc.hookCalls()).toEqual(
        expect.arrayContaining(['set boot pxe', 'set reset 1', 'set boot default']),
      );
      expect(await lab().lab.netns.reaches(probe.ns, address(), 10)).toBe(true);
      const enrolled = await inventory.call('getNode', { id: node.name });
      expect(enrolled.provisionState).toBe(ProvisionState.PROVISION_STATE_ACTIVE);
      expect((await instances.call('getInstance', { id: created.id })).state).toBe(
        InstanceState.INSTANCE_STATE_ACTIVE,
      );
      const pid = node.bmc.nodePid();
      if (pid) qemuPids.add(pid);
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toContain('qemu-system-x86_64');
    },
    SLOW_MS,
  );

  it(
    'deletes it: the agent wipes /dev/vda, the VM is powered off, the node is available again',
    async () => {
      const { instances, inventory, networks } = lab();
      const victim = await instances.call('getInstance', { id: 'vm1', project: 'acme' });
      await instances.call('deleteInstance', { id: victim.id });
      const events = await lab().watch(victim.id, {
        untilDeleted: true,
        onEvent: () => {
          const pid = node.bmc.nodePid();
          if (pid) qemuPids.add(pid);
        },
      });
      expect(events.at(-1)?.deleted, `serial console:\n${serial()}`).toBe(true);
      const steps = new Set(events.map((e) => e.instance?.step).filter(Boolean));
      for (const step of ['wiping', 'power-off', 'release'] satisfies (typeof DELETE_STEPS)[number][])
        expect(steps).toContain(step);

      const enrolled = await inventory.call('getNode', { id: node.name });
      expect(enrolled.provisionState).toBe(ProvisionState.PROVISION_STATE_AVAILABLE);
      expect(enrolled.powerState).toBe(PowerState.POWER_STATE_OFF);
      expect(enrolled.networkId).toBe((await networks.call('getNetwork', { id: 'service' })).id);
      expect(node.bmc.nodePid()).toBeUndefined();
      // The first MiB (MBR, the FAT's boot sector) is zero: nothing boots from this disk any more.
      const head = readFileSync(node.diskFile).subarray(0, 1 << 20);
      expect(head.equals(Buffer.alloc(1 << 20))).toBe(true);
      expect(await lab().lab.netns.reaches(probe.ns, address(), 2)).toBe(false);
    },
    SLOW_MS,
  );

  it(
    'stops everything it started: QEMU by PID, the namespaces with their taps, the disk files',
    async () => {
      const { switchNs, dir } = lab().lab;
      expect(qemuPids.size).toBeGreaterThan(0);
      await lab().stop();
      p = undefined;
      for (const pid of qemuPids) {
        const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, 'utf8') : '';
        expect(stat === '' || / [ZX] /.test(stat.slice(stat.lastIndexOf(')')))).toBe(true);
      }
      expect(existsSync(`/run/netns/${switchNs}`)).toBe(false);
      expect(existsSync(dir)).toBe(false);
    },
    SLOW_MS,
  );
});
