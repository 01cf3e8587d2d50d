/**
 * The Linux-bridge driver as the real switch, through the controller's NetworkService: a switch
 * namespace with one bridge per network, a node namespace plugged into it by a veth, and one host
 * on each network. After a move the node reaches the project network's host and no longer the
 * service network's, and back again: real traffic, same subnet, so only layer 2 decides.
 */
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as networkPb from '../../build/gen/ingot/v1/network.ts';
import { LinuxBridgeDriver } from '../../controller/src/drivers/network/linux-bridge.ts';
import { Secret } from '../../controller/src/drivers/power/power-driver.ts';
import { NetnsLab } from '../../tools/lab/netns-lab.ts';
import {
  InventoryApi,
  removeDataDir,
  ServiceApi,
  startTestController,
  type TestController,
} from '../support/controller.ts';

const SERVICE_HOST = '10.9.0.1';
const PROJECT_HOST = '10.9.0.2';

describe('Linux-bridge switch with real traffic in network namespaces', () => {
  let lab: NetnsLab;
  let swNs: string;
  let nodeNs: string;
  let ctl: TestController;
  let inventory: InventoryApi;
  let networks: ServiceApi<typeof networkPb.NetworkServiceService>;

  beforeAll(async () => {
    lab = await NetnsLab.create('nw');
    swNs = await lab.namespace('sw');
    nodeNs = await lab.namespace('node');
    const svcNs = await lab.namespace('svc');
    const prjNs = await lab.namespace('prj');
    await lab.bridge(swNs, 'br-svc');
    await lab.bridge(swNs, 'br-prj');
    await lab.veth(
      { ns: swNs, name: 'p-svc', master: 'br-svc' },
      { ns: svcNs, name: 'eth0', cidr: `${SERVICE_HOST}/24` },
    );
    await lab.veth(
      { ns: swNs, name: 'p-prj', master: 'br-prj' },
      { ns: prjNs, name: 'eth0', cidr: `${PROJECT_HOST}/24` },
    );
    await lab.veth(
      { ns: swNs, name: 'p-node', master: 'br-svc' },
      { ns: nodeNs, name: 'eth0', cidr: '10.9.0.10/24', mac: '52:54:00:09:00:10' },
    );

    ctl = await startTestController();
    inventory = new InventoryApi(ctl.address, ctl.token);
    networks = new ServiceApi(networkPb.NetworkServiceService, networkPb, ctl.address, ctl.token);
    await inventory.call('createProject', { project: { name: 'tenant' } });
    await inventory.call('createSwitch', {
      switch: {
        name: 'linux-sw',
        address: 'localhost',
        driver: 'linux-bridge',
        driverOptions: { transport: 'local', netns: swNs },
      },
    });
    await networks.call('createNetwork', {
      network: {
        name: 'service',
        kind: networkPb.NetworkKind.NETWORK_KIND_SERVICE,
        vlanId: 10,
        bridge: 'br-svc',
      },
    });
    await networks.call('createNetwork', {
      network: { name: 'tenant-net', projectId: 'tenant', vlanId: 20, bridge: 'br-prj' },
    });
    await inventory.call('createNode', {
      node: {
        name: 'node1',
        ip: '10.9.0.10',
        mac: '52:54:00:09:00:10',
        cpus: 1,
        ramMb: 512,
        diskGb: 1,
        bmcAddress: '127.0.0.1:623',
        switchId: 'linux-sw',
        switchPort: 'p-node',
      },
    });
  });

  afterAll(async () => {
    inventory?.close();
    networks?.close();
    await ctl?.stop();
    if (ctl) removeDataDir(ctl.dataDir);
    await lab?.destroy();
  });

  it('starts on the service network only', async () => {
    expect(await lab.reaches(nodeNs, SERVICE_HOST)).toBe(true);
    expect(await lab.reaches(nodeNs, PROJECT_HOST)).toBe(false);
  });

  it('a move to the project network cuts the node off the service network, and back again', async () => {
    const moved = await networks.call('setNodeNetwork', { node: 'node1', network: 'tenant-net' });
    expect(moved).toMatchObject({ networkName: 'tenant-net', changed: true });
    expect(await lab.reaches(nodeNs, PROJECT_HOST)).toBe(true);
    expect(await lab.reaches(nodeNs, SERVICE_HOST)).toBe(false);
    expect(await networks.call('getPortStatus', { switch: 'linux-sw', port: 'p-node' })).toMatchObject({
      bridge: 'br-prj',
      link: 'up',
      networkName: 'tenant-net',
      nodeName: 'node1',
      inSync: true,
    });

    expect((await networks.call('setNodeNetwork', { node: 'node1', network: 'tenant-net' })).changed).toBe(
      false,
    );

    const back = await networks.call('setNodeNetwork', { node: 'node1', network: 'service' });
    expect(back.changed).toBe(true);
    expect(await lab.reaches(nodeNs, SERVICE_HOST)).toBe(true);
    expect(await lab.reaches(nodeNs, PROJECT_HOST)).toBe(false);
  });

  it('refuses a port or a bridge the host does not have, and moves nothing', async () => {
    const driver = new LinuxBridgeDriver();
    const target = {
      name: 'linux-sw',
      host: 'localhost',
      username: '',
      password: new Secret(''),
      privateKey: new Secret(''),
      hostKeyFingerprint: '',
      options: { transport: 'local', netns: swNs },
    };
    await expect(
      driver.applyPortChanges(target, [
        { port: 'p-node', network: { name: 'tenant-net', vlanId: 20, bridge: 'br-prj' } },
        { port: 'p-gone', network: { name: 'tenant-net', vlanId: 20, bridge: 'br-prj' } },
      ]),
    ).rejects.toMatchObject({ reason: 'SWITCH_PORT_NOT_FOUND', code: status.FAILED_PRECONDITION });
    await expect(
      driver.applyPortChanges(target, [
        { port: 'p-node', network: { name: 'x', vlanId: 30, bridge: 'br-none' } },
      ]),
    ).rejects.toMatchObject({ reason: 'SWITCH_COMMAND_FAILED', message: expect.stringContaining('br-none') });
    expect((await driver.portStatus(target, 'p-node')).bridge).toBe('br-svc');
    expect(driver.validateOptions({ transport: 'telnet', colour: 'blue' }).map((v) => v.field)).toEqual([
      'switch.driver_options.colour',
      'switch.driver_options.transport',
    ]);
  });
});
