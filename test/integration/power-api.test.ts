import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PowerState } from '../../build/gen/ingot/v1/inventory.ts';
import * as powerPb from '../../build/gen/ingot/v1/power.ts';
import { PowerSync } from '../../controller/src/conductor/power-sync.ts';
import { PowerManager } from '../../controller/src/drivers/power/power-manager.ts';
import { createPowerDrivers } from '../../controller/src/drivers/power/registry.ts';
import { createLogger } from '../../controller/src/log/logger.ts';
import { SecretBox } from '../../controller/src/store/secrets.ts';
import { createToken } from '../../controller/src/store/tokens.ts';
import { runBmctl } from '../../tools/bmctl/cli.ts';
import { type BmcLab, freeUdpPort, startBmcLab } from '../../tools/lab/bmc-lab.ts';
import {
  BACKENDS,
  InventoryApi,
  removeDataDir,
  ServiceApi,
  startTestController,
  type TestController,
} from '../support/controller.ts';

const { PowerAction, BootDevice } = powerPb;
/** What ipmi_sim needs; timeouts stay at the defaults (safety nets on a loaded machine). */
const LAB_BMC = { freeipmiWorkarounds: ['opensesspriv'] };

// PowerService through a real controller, its nodes' BMCs simulated by ipmi_sim.
describe.each(BACKENDS)('PowerService on %s', (backend) => {
  let lab: BmcLab;
  let controller: TestController;
  let inventory: InventoryApi;
  let power: ServiceApi<typeof powerPb.PowerServiceService>;

  const addNode = (name: string, n: number, fields: Record<string, unknown>) =>
    inventory.call('createNode', {
      node: {
        name,
        ip: `10.0.1.${n}`,
        mac: `52:54:00:00:07:${n.toString(16).padStart(2, '0')}`,
        cpus: 4,
        ramMb: 4096,
        diskGb: 50,
        bmcOptions: LAB_BMC,
        ...fields,
      },
    });

  async function bmctl(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    const code = await runBmctl(argv, {
      env: { INGOT_ENDPOINT: controller.address, INGOT_TOKEN: controller.token },
      stdout: (text) => {
        stdout += text;
      },
      stderr: (text) => {
        stderr += text;
      },
      readStdin: async () => '',
      cwd: controller.dataDir,
    });
    return { code, stdout, stderr };
  }

  beforeAll(async () => {
    lab = await startBmcLab({ count: 3 });
    controller = await startTestController({ backend });
    inventory = new InventoryApi(controller.address, controller.token);
    power = new ServiceApi(powerPb.PowerServiceService, powerPb, controller.address, controller.token);
    const [a, b, c] = lab.bmcs;
    if (!a || !b || !c) throw new Error('lab did not start 3 BMCs');
    await addNode('ipmitool-node', 1, {
      bmcAddress: a.address,
      bmcUsername: a.username,
      bmcPassword: a.password,
      powerDriver: 'ipmitool',
    });
    await addNode('freeipmi-node', 2, {
      bmcAddress: `ipmi://${b.address}`,
      bmcUsername: b.username,
      bmcPassword: b.password,
      powerDriver: 'freeipmi',
    });
    await addNode('wrong-password', 3, {
      bmcAddress: c.address,
      bmcUsername: c.username,
      bmcPassword: 'not-the-password',
    });
    await addNode('no-bmc-there', 4, {
      bmcAddress: `127.0.0.1:${await freeUdpPort()}`,
      bmcUsername: 'admin',
      bmcPassword: 'x',
      // Short: the tests wait for it to expire.
      bmcOptions: { timeoutMs: 1_000, retries: 0 },
    });
  });

  afterAll(async () => {
    inventory?.close();
    power?.close();
    await controller?.stop();
    if (controller) removeDataDir(controller.dataDir);
    await lab?.stop();
  });

  it('stores BMC options and shows the settings in effect', async () => {
    const node = await inventory.call('getNode', { id: 'ipmitool-node' });
    expect(node.bmcOptions).toEqual({
      cipherSuite: 3,
      freeipmiWorkarounds: ['opensesspriv'],
      timeoutMs: 10000,
      retries: 2,
      powerWaitMs: 60000,
    });
    expect(node.powerState).toBe(PowerState.POWER_STATE_UNSPECIFIED);
  });

  it('refuses BMC options out of range or unknown workarounds, naming the field', async () => {
    const err = await inventory.fail('createNode', {
      node: {
        ip: '10.0.1.99',
        mac: '52:54:00:00:07:99',
        cpus: 1,
        ramMb: 1,
        diskGb: 1,
        bmcAddress: '10.0.2.99',
        bmcOptions: { cipherSuite: 42, freeipmiWorkarounds: ['make-it-work'] },
      },
    });
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.violations).toHaveLength(1);
    expect(err.violations[0]?.field).toBe('node.bmc_options');
    expect(err.violations[0]?.description).toMatch(/cipher_suite must be from 1 to 17/);
    expect(err.violations[0]?.description).toMatch(/unknown flag "make-it-work"/);
  });

  it.each(['ipmitool-node', 'freeipmi-node'])('%s: powers on and off, the machine follows', async (name) => {
    const bmc = lab.bmcs[name === 'ipmitool-node' ? 0 : 1];
    const off = await power.call('getPowerState', { node: name });
    expect(off).toMatchObject({ nodeName: name, powerState: PowerState.POWER_STATE_OFF });

    const on = await power.call('setPower', { node: name, action: PowerAction.POWER_ACTION_ON });
    expect(on).toMatchObject({ powerState: PowerState.POWER_STATE_ON, commandsSent: ['on'] });
    expect(bmc?.nodePid()).toBeDefined();
    const shown = await inventory.call('getNode', { id: name });
    expect(shown).toMatchObject({
      powerState: PowerState.POWER_STATE_ON,
      expectedPowerState: PowerState.POWER_STATE_ON,
      powerDriftTime: undefined,
    });
    expect(shown.powerStateTime).toBeInstanceOf(Date);

    const reset = await power.call('setPower', { node: name, action: PowerAction.POWER_ACTION_RESET });
    expect(reset.commandsSent).toEqual(['reset']);

    const soft = await power.call('setPower', { node: name, action: PowerAction.POWER_ACTION_SOFT_OFF });
    expect(soft).toMatchObject({ powerState: PowerState.POWER_STATE_OFF, forcedOff: false });
    expect(bmc?.nodePid()).toBeUndefined();
  });

  it.each(['ipmitool-node', 'freeipmi-node'])('%s: sets the boot device and reads it back', async (name) => {
    const pxe = await power.call('setBootDevice', { node: name, device: BootDevice.BOOT_DEVICE_PXE });
    expect(pxe.device).toBe(BootDevice.BOOT_DEVICE_PXE);
    const disk = await power.call('setBootDevice', {
      node: name,
      device: BootDevice.BOOT_DEVICE_DISK,
      persistent: true,
    });
    expect(disk.device).toBe(BootDevice.BOOT_DEVICE_DISK);
    expect((await power.call('getBootDevice', { node: name })).device).toBe(BootDevice.BOOT_DEVICE_DISK);
  });

  it('a BMC that refuses the credentials: FAILED_PRECONDITION BMC_AUTH_FAILED with its own words', async () => {
    const err = await power.fail('setPower', { node: 'wrong-password', action: PowerAction.POWER_ACTION_ON });
    expect(err.code).toBe(status.FAILED_PRECONDITION);
    expect(err.reason).toBe('BMC_AUTH_FAILED');
    expect(err.metadata).toMatchObject({ node: 'wrong-password', driver: 'ipmitool' });
    expect(err.metadata?.bmc_message).toMatch(/RAKP 2 HMAC is invalid/);
    expect(err.message).not.toContain('not-the-password');
    expect(lab.bmcs[2]?.nodePid()).toBeUndefined();
  });

  it('a BMC that does not answer: UNAVAILABLE BMC_UNREACHABLE', async () => {
    const err = await power.fail('getPowerState', { node: 'no-bmc-there' });
    expect(err.code).toBe(status.UNAVAILABLE);
    expect(err.reason).toBe('BMC_UNREACHABLE');
  });

  it('refuses bad requests, unknown nodes and project members', async () => {
    const noAction = await power.fail('setPower', { node: 'ipmitool-node' });
    expect(noAction.code).toBe(status.INVALID_ARGUMENT);
    expect(noAction.violations[0]?.field).toBe('action');
    const readOnlyDevice = await power.fail('setBootDevice', {
      node: 'ipmitool-node',
      device: BootDevice.BOOT_DEVICE_NONE,
    });
    expect(readOnlyDevice.violations[0]?.field).toBe('device');
    expect((await power.fail('getPowerState', { node: 'nope' })).code).toBe(status.NOT_FOUND);

    const project = await inventory.call('createProject', { project: { name: 'tenant' } });
    const member = await createToken(controller.db.fork(), {
      role: 'member',
      projectId: project.id,
      description: 'tenant member',
    });
    const denied = await power.withToken(member).fail('setPower', {
      node: 'ipmitool-node',
      action: PowerAction.POWER_ACTION_ON,
    });
    expect(denied.code).toBe(status.PERMISSION_DENIED);
    expect(lab.bmcs[0]?.nodePid()).toBeUndefined();
  });

  it('power sync records the observed state, drift from the expected one, and BMC errors', async () => {
    await power.call('setPower', { node: 'freeipmi-node', action: PowerAction.POWER_ACTION_ON });
    // The machine dies behind Ingot's back.
    lab.bmcs[1]?.killNode();
    const sync = new PowerSync({
      db: controller.db,
      secrets: SecretBox.fromFile(join(controller.dataDir, 'secret.key'), { create: false }),
      power: new PowerManager({ drivers: createPowerDrivers(), log: createLogger('silent') }),
      log: createLogger('silent'),
    });
    const report = await sync.runOnce();
    // Two BMCs answer; the one refusing the credentials and the one that is not there fail.
    expect(report).toEqual({ checked: 2, failed: 2, drifted: 1, skipped: 0 });

    const drifted = await inventory.call('getNode', { id: 'freeipmi-node' });
    expect(drifted).toMatchObject({
      powerState: PowerState.POWER_STATE_OFF,
      expectedPowerState: PowerState.POWER_STATE_ON,
      powerError: '',
    });
    expect(drifted.powerDriftTime).toBeInstanceOf(Date);
    const dead = await inventory.call('getNode', { id: 'no-bmc-there' });
    expect(dead.powerError).toMatch(/did not answer/);
    expect((await inventory.call('getNode', { id: 'wrong-password' })).powerError).toMatch(
      /refused the credentials/,
    );

    // Back on: the drift ends at the next round.
    await power.call('setPower', { node: 'freeipmi-node', action: PowerAction.POWER_ACTION_ON });
    await sync.runOnce();
    expect((await inventory.call('getNode', { id: 'freeipmi-node' })).powerDriftTime).toBeUndefined();
  });

  it('bmctl node power, boot-device and bmc-options', async () => {
    expect(await bmctl('node', 'power', 'on', 'ipmitool-node')).toMatchObject({ code: 0, stderr: '' });
    expect(lab.bmcs[0]?.nodePid()).toBeDefined();
    const status = await bmctl('node', 'power', 'status', 'ipmitool-node', '-o', 'json');
    expect(JSON.parse(status.stdout)).toMatchObject({
      node_name: 'ipmitool-node',
      power_state: 'POWER_STATE_ON',
    });
    const off = await bmctl('node', 'power', 'off', 'ipmitool-node');
    expect(off.stdout).toMatch(/^power_state\s+off$/m);
    expect(off.stdout).toMatch(/^commands_sent\s+off$/m);
    expect(lab.bmcs[0]?.nodePid()).toBeUndefined();

    const set = await bmctl('node', 'boot-device', 'freeipmi-node', 'pxe', '--persistent');
    expect(set).toMatchObject({ code: 0, stderr: '' });
    expect(set.stdout).toMatch(/^boot_device\s+pxe$/m);
    expect((await bmctl('node', 'boot-device', 'freeipmi-node')).stdout).toMatch(/^boot_device\s+pxe$/m);
    expect(lab.bmcs[1]?.bootDevice()).toBe('pxe');

    const refused = await bmctl('node', 'power', 'on', 'wrong-password');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /^bmctl: failed precondition: BMC 127\.0\.0\.1:\d+ refused the credentials: RAKP 2 HMAC is invalid/,
    );
    const unreachable = await bmctl('node', 'power', 'status', 'no-bmc-there');
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/^bmctl: unavailable: BMC 127\.0\.0\.1:\d+ did not answer/);
    expect((await bmctl('node', 'power', 'on', 'ipmitool-node', '--soft-timeout', '5')).code).toBe(2);

    const tuned = await bmctl(
      'node',
      'bmc-options',
      'freeipmi-node',
      '--bmc-retries',
      '1',
      '--cipher-suite',
      '17',
      '-o',
      'json',
    );
    expect(JSON.parse(tuned.stdout).bmc_options).toEqual({
      cipher_suite: 17,
      freeipmi_workarounds: ['opensesspriv'],
      timeout_ms: 10000,
      retries: 1,
      power_wait_ms: 60000,
    });
    // Back to what the lab BMC speaks.
    expect((await bmctl('node', 'bmc-options', 'freeipmi-node', '--cipher-suite', '3')).code).toBe(0);
    expect((await bmctl('node', 'power', 'status', 'freeipmi-node')).code).toBe(0);
  });
});
