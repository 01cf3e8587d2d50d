import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TaskState } from '../../build/gen/ingot/v1/task.ts';
import {
  AgentProcess,
  agentApi,
  createLoopDevice,
  ensureAgentBinary,
  eventually,
  finishedTask,
  followWrites,
  imageApi,
  type LoopDevice,
  makeImage,
  readDevice,
  taskApi,
  uploadImage,
} from '../support/agent.ts';
import {
  InventoryApi,
  removeDataDir,
  startTestController,
  type TestController,
} from '../support/controller.ts';
import { FaultyProxy } from '../support/faulty-proxy.ts';

// The agent executable's other tasks and its life with the controller: wipe, inspect, reboot and
// power off, cancellation mid-deploy, refused tokens, and two agents claiming one node.

const MiB = 1 << 20;
const DISK_BYTES = 32 * MiB;
const NODE_MAC = '52:54:00:a9:00:11';

describe('the agent executable', () => {
  let ctl: TestController;
  let proxy: FaultyProxy;
  let disk: LoopDevice;
  /** A block device the agent is not allowed to touch. */
  let other: LoopDevice;
  let marks: string;
  const running: AgentProcess[] = [];
  const tasks = () => taskApi(ctl.address, ctl.token);

  function startAgent(token: string, args: string[] = [], tokenFlag = false): AgentProcess {
    const agent = AgentProcess.start({
      controller: ctl.address,
      token,
      disks: [disk.path],
      macs: [NODE_MAC],
      tokenFlag,
      args: ['--reboot-command', `touch ${join(marks, 'rebooted')}`, ...args],
    });
    running.push(agent);
    return agent;
  }

  async function mint(): Promise<string> {
    return (await agentApi(ctl.address, ctl.token).call('createAgentToken', { node: 'task-node' })).token;
  }

  async function connected(): Promise<string[]> {
    return (await agentApi(ctl.address, ctl.token).call('listAgents', {})).agents.map((a) => a.peer);
  }

  /** An agent for the node, connected. */
  async function agentUp(): Promise<AgentProcess> {
    const agent = startAgent(await mint());
    await agent.waitFor('connected', (l) => l.msg === 'connected to the controller');
    return agent;
  }

  async function run(spec: Record<string, unknown>) {
    const task = await tasks().call('createTask', { node: 'task-node', spec });
    return (await finishedTask(ctl.address, ctl.token, task.id)).task;
  }

  async function fillDisk(byte: number): Promise<void> {
    const { open } = await import('node:fs/promises');
    const handle = await open(disk.path, 'r+');
    try {
      await handle.write(Buffer.alloc(DISK_BYTES, byte), 0, DISK_BYTES, 0);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  beforeAll(async () => {
    await ensureAgentBinary();
    marks = mkdtempSync(join(tmpdir(), 'ingot-agent-marks-'));
    proxy = await FaultyProxy.start();
    ctl = await startTestController({ args: ['--http-advertise-url', proxy.url] });
    proxy.setTarget(ctl.httpAddress);
    disk = await createLoopDevice(DISK_BYTES);
    other = await createLoopDevice(4 * MiB);
    await new InventoryApi(ctl.address, ctl.token).call('createNode', {
      node: {
        name: 'task-node',
        ip: '10.9.2.1',
        mac: NODE_MAC,
        cpus: 2,
        ramMb: 1024,
        diskGb: 1,
        bmcAddress: '10.9.3.1',
        bmcUsername: 'admin',
      },
    });
  });

  // Each test starts with no agent connected: the node's lease is free.
  afterEach(async () => {
    for (const agent of running.splice(0)) await agent.stop();
    await eventually('the node’s lease to be free', async () =>
      (await connected()).length === 0 ? true : undefined,
    );
  });

  afterAll(async () => {
    for (const agent of running) await agent.stop();
    await ctl?.stop();
    await proxy?.stop();
    await disk?.detach();
    await other?.detach();
    if (marks) rmSync(marks, { recursive: true, force: true });
    if (ctl) removeDataDir(ctl.dataDir);
  });

  it('refuses a wrong token and one replaced by a newer one: the agent exits with status 3', async () => {
    const wrong = startAgent('ingot_agent_this-is-not-a-token', [], true);
    expect((await wrong.exited).code).toBe(3);
    expect(wrong.lines.some((l) => l.msg === 'the controller refused this agent' && l.code === 16)).toBe(
      true,
    );

    const old = await mint();
    await mint();
    const replaced = startAgent(old);
    expect((await replaced.exited).code).toBe(3);
    expect(await connected()).toEqual([]);
  });

  it('lets one agent per node in: a second one waits until the first is gone', async () => {
    const token = await mint();
    const first = startAgent(token);
    await first.waitFor('connected', (l) => l.msg === 'connected to the controller');
    const second = startAgent(token);
    await second.waitFor(
      'refused as a second agent',
      (l) => l.msg.startsWith('disconnected') && l.code === 6,
    );
    expect(await connected()).toHaveLength(1);

    await first.stop();
    await second.waitFor('connected once the first left', (l) => l.msg === 'connected to the controller');
    expect(await connected()).toHaveLength(1);
  });

  it('connects once the controller is reachable and reconnects when the network drops', async () => {
    // The agent dials a proxy that has nowhere to forward yet: every attempt fails, it keeps trying.
    const network = await FaultyProxy.start();
    try {
      const agent = AgentProcess.start({
        controller: network.url.replace('http://', ''),
        token: await mint(),
        disks: [disk.path],
        macs: [NODE_MAC],
        args: ['--reconnect-max-ms', '200'],
      });
      running.push(agent);
      await agent.waitFor('a failed attempt', (l) => l.msg.startsWith('disconnected'));
      network.setTarget(ctl.address);
      await agent.waitFor('connected', (l) => l.msg === 'connected to the controller');

      network.dropAll();
      const connects = () => agent.lines.filter((l) => l.msg === 'connected to the controller').length;
      await eventually('a reconnect', () => (connects() === 2 ? true : undefined));
      expect((await run({ inspect: {} })).state).toBe(TaskState.TASK_STATE_SUCCEEDED);
      await agent.stop();
    } finally {
      await network.stop();
    }
  });

  it('wipes the partition tables at both ends, or the whole disk', async () => {
    await agentUp();
    await fillDisk(0xab);
    const ends = await run({ wipe: { disk: disk.path } });
    expect(ends.state, JSON.stringify(ends.error)).toBe(TaskState.TASK_STATE_SUCCEEDED);
    expect(ends.outcome?.bytesWritten).toBe(8 * MiB);
    expect((await readDevice(disk.path, 0, 4 * MiB)).equals(Buffer.alloc(4 * MiB))).toBe(true);
    expect((await readDevice(disk.path, DISK_BYTES - 4 * MiB, 4 * MiB)).equals(Buffer.alloc(4 * MiB))).toBe(
      true,
    );
    expect((await readDevice(disk.path, 4 * MiB, MiB)).equals(Buffer.alloc(MiB, 0xab))).toBe(true);

    const full = await run({ wipe: { disk: disk.path, full: true } });
    expect(full.outcome?.bytesWritten).toBe(DISK_BYTES);
    expect((await readDevice(disk.path, 0, DISK_BYTES)).equals(Buffer.alloc(DISK_BYTES))).toBe(true);

    const notAllowed = await run({ wipe: { disk: other.path } });
    expect(notAllowed.error?.reason).toBe('DISK_NOT_ALLOWED');
    const notADisk = await run({ wipe: { disk: '/dev/null' } });
    expect(notADisk.error?.reason).toBe('DISK_NOT_FOUND');
  });

  it('reports the hardware, the allowed disk among it', async () => {
    await agentUp();
    const task = await run({ inspect: {} });
    expect(task.state).toBe(TaskState.TASK_STATE_SUCCEEDED);
    const inventory = task.outcome?.inventory;
    expect(inventory?.cpuCount).toBeGreaterThan(0);
    expect(inventory?.ramBytes).toBeGreaterThan(0);
    expect(inventory?.disks).toContainEqual(
      expect.objectContaining({ path: disk.path, sizeBytes: DISK_BYTES }),
    );
  });

  it('reboots with its command once the controller has the outcome, and refuses without one', async () => {
    await agentUp();
    const task = await run({ reboot: {} });
    expect(task.state).toBe(TaskState.TASK_STATE_SUCCEEDED);
    await eventually('the reboot command to run', () =>
      existsSync(join(marks, 'rebooted')) ? true : undefined,
    );

    const off = await run({ poweroff: {} });
    expect(off.state).toBe(TaskState.TASK_STATE_FAILED);
    expect(off.error?.reason).toBe('POWER_COMMAND_UNSET');
  });

  it('stops a deploy when cancelled and wipes what it had written', async () => {
    await agentUp();
    await fillDisk(0xcd);
    const created = await imageApi(ctl.address, ctl.token).call('createImage', {
      image: { name: 'cancelled' },
    });
    const image = await uploadImage(ctl.address, ctl.token, { id: created.id }, makeImage(16 * MiB, 13));
    const release = proxy.stallAfter(6 * MiB);
    const task = await tasks().call('createTask', {
      node: 'task-node',
      spec: { deploy: { image: image.id, disk: disk.path } },
    });
    const writes = followWrites(ctl.address, ctl.token, task.id);
    await eventually('the download to stall mid-image', () =>
      proxy.stalled && writes.written() > 0 ? true : undefined,
    );
    writes.stop();
    await tasks().call('cancelTask', { id: task.id });
    const { task: final } = await finishedTask(ctl.address, ctl.token, task.id);
    release();
    expect(final.state).toBe(TaskState.TASK_STATE_CANCELLED);
    expect(final.error?.reason).toBe('CANCELLED');
    expect((await readDevice(disk.path, 0, 4 * MiB)).equals(Buffer.alloc(4 * MiB))).toBe(true);
    expect((await readDevice(disk.path, DISK_BYTES - 4 * MiB, 4 * MiB)).equals(Buffer.alloc(4 * MiB))).toBe(
      true,
    );
  });
});
