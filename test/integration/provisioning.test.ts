/**
 * `nova boot`, all of it, on virtual bare-metal nodes: three instances booted
 * at once go through the service network, netboot (real DHCP from the
 * controller's dnsmasq, iPXE script over HTTP), the real agent writing the
 * image onto each node's loop device, the port move to the project network
 * and the boot from disk; then a delete wipes a node and gives it back.
 */
import { existsSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InstanceState } from '../../build/gen/ingot/v1/instance.ts';
import { NetbootState, ProvisionState } from '../../build/gen/ingot/v1/inventory.ts';
import { DEPLOY_STEPS } from '../../controller/src/domain/flows.ts';
import { deviceDigest, readLabImage } from '../../tools/lab/lab-image.ts';
import type { Probe } from '../../tools/lab/virtual-lab.ts';
import { eventually } from '../support/agent.ts';
import { type ProvisioningLab, startProvisioningLab } from '../support/provisioning-lab.ts';

const SLOW_MS = 300_000;

describe('provisioning on virtual bare-metal nodes', () => {
  let p: ProvisioningLab;
  let probe: Probe;

  beforeAll(async () => {
    p = await startProvisioningLab({ count: 3 });
    probe = await p.lab.addProbe('br-proj');
  }, SLOW_MS);

  afterAll(async () => {
    await p?.stop();
  }, SLOW_MS);

  const nodeOf = (hostName: string) => {
    const node = p.lab.nodes.find((n) => n.name === hostName);
    if (!node) throw new Error(`no lab node ${hostName}`);
    return node;
  };
  const projectAddress = (hostName: string) => nodeOf(hostName).projectIp.split('/')[0] as string;

  it(
    'boots three instances in parallel: ACTIVE, image on disk, on the project network, no netboot entry',
    async () => {
      const created = await Promise.all(['web1', 'web2', 'web3'].map((name) => p.boot(name)));
      for (const instance of created) {
        expect(instance.state).toBe(InstanceState.INSTANCE_STATE_SCHEDULED);
        expect(instance.hostKind).toBe('node');
        expect(instance.networkName).toBe('acme-net');
      }
      const watched = await Promise.all(created.map((i) => p.watch(i.id)));
      for (const events of watched) {
        const last = events.at(-1)?.instance;
        expect(last?.reason).toBe('');
        expect(last?.state).toBe(InstanceState.INSTANCE_STATE_ACTIVE);
        // The watcher saw the steps go by and the image being written.
        const steps = new Set(events.map((e) => e.instance?.step).filter(Boolean));
        expect(steps.has('deploying')).toBe(true);
        expect(events.some((e) => e.progressOnly && (e.instance?.progress?.bytesDone ?? 0) > 0)).toBe(true);
        expect(last?.steps.map((s) => [s.name, s.state])).toEqual(DEPLOY_STEPS.map((name) => [name, 'done']));
      }
      const hosts = created.map((i) => i.hostName);
      expect(new Set(hosts).size).toBe(3);

      for (const host of hosts) {
        const node = nodeOf(host);
        // The disk holds the image, byte for byte.
        expect(await deviceDigest(node.disk, p.image.sizeBytes)).toBe(p.image.sha256);
        // The port is on the project bridge, and traffic proves it.
        const enrolled = await p.inventory.call('getNode', { id: host });
        expect(enrolled.provisionState).toBe(ProvisionState.PROVISION_STATE_ACTIVE);
        expect(enrolled.netbootState).toBe(NetbootState.NETBOOT_STATE_UNSPECIFIED);
        await eventually(`${host} booted from disk`, () =>
          p.lab.nodeLog(node).includes('booted ingot-lab-os from disk') ? true : undefined,
        );
        expect(await p.lab.netns.reaches(probe.ns, projectAddress(host), 5)).toBe(true);
      }
      // No DHCP host entry (a file named after the MAC) is left behind.
      const hostsDir = `${p.netbootDir}/hosts`;
      const entries = existsSync(hostsDir) ? readdirSync(hostsDir) : [];
      for (const host of hosts) expect(entries).not.toContain(nodeOf(host).mac.replace(/:/g, '-'));
    },
    SLOW_MS,
  );

  it(
    'deletes an instance: disk wiped, port back on the service network, node available for the next boot',
    async () => {
      const victim = await p.instances.call('getInstance', { id: 'web2', project: 'acme' });
      const node = nodeOf(victim.hostName);
      const deleting = await p.instances.call('deleteInstance', { id: victim.id });
      expect(deleting.state).toBe(InstanceState.INSTANCE_STATE_DELETING);
      const events = await p.watch(victim.id, { untilDeleted: true });
      expect(events.at(-1)?.deleted).toBe(true);
      const steps = events.map((e) => e.instance?.step).filter(Boolean);
      expect(steps).toContain('wiping');
      expect(steps).toContain('release');

      const enrolled = await p.inventory.call('getNode', { id: node.name });
      expect(enrolled.provisionState).toBe(ProvisionState.PROVISION_STATE_AVAILABLE);
      expect(enrolled.instanceId).toBe('');
      const service = await p.networks.call('getNetwork', { id: 'service' });
      expect(enrolled.networkId).toBe(service.id);
      expect(await readLabImage(node.disk)).toMatchObject({ valid: false });
      expect(await p.lab.netns.reaches(probe.ns, projectAddress(node.name), 2)).toBe(false);
      expect(await p.instances.fail('getInstance', { id: victim.id })).toMatchObject({ code: 5 });

      // The freed node takes the next boot.
      const next = await p.boot('web4');
      expect(next.hostName).toBe(node.name);
      const last = (await p.watch(next.id)).at(-1)?.instance;
      expect(last?.state).toBe(InstanceState.INSTANCE_STATE_ACTIVE);
    },
    SLOW_MS,
  );

  it(
    'stops on SIGTERM after its flows, although the agents it served vanished without closing their streams',
    async () => {
      expect(await p.controller.terminate(60_000)).toEqual({ code: 0, signal: null });
      expect(p.controller.logs().at(-1)?.msg).toBe('controller stopped');
    },
    SLOW_MS,
  );
});
