import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
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

// The controller restarts in the middle of a deploy. The agent's stream and its download both go
// through proxies, so the restarted controller (on new ports, same data directory) can take over
// the addresses the agent knows. Nothing is lost and nothing is done twice.

const MiB = 1 << 20;
const NODE_MAC = '52:54:00:a9:00:31';

describe('a controller restart mid-deploy', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'ingot-restart-'));
  let ctl: TestController | undefined;
  let grpcFront: FaultyProxy | undefined;
  let httpFront: FaultyProxy | undefined;
  let disk: LoopDevice | undefined;
  let agent: AgentProcess | undefined;

  afterAll(async () => {
    await agent?.stop();
    await ctl?.stop();
    await grpcFront?.stop();
    await httpFront?.stop();
    await disk?.detach();
    removeDataDir(dataDir);
  });

  it('lets the agent finish the deploy with the restarted controller, without sending it again', async () => {
    await ensureAgentBinary();
    grpcFront = await FaultyProxy.start();
    httpFront = await FaultyProxy.start();
    const start = async () => {
      const started = await startTestController({
        dataDir,
        args: ['--http-advertise-url', httpFront?.url ?? ''],
      });
      grpcFront?.setTarget(started.address);
      httpFront?.setTarget(started.httpAddress);
      return started;
    };
    ctl = await start();
    disk = await createLoopDevice(32 * MiB);
    await new InventoryApi(ctl.address, ctl.token).call('createNode', {
      node: {
        name: 'restart-node',
        ip: '10.9.6.1',
        mac: NODE_MAC,
        cpus: 1,
        ramMb: 512,
        diskGb: 1,
        bmcAddress: '10.9.7.1',
        bmcUsername: 'a',
      },
    });
    const token = (await agentApi(ctl.address, ctl.token).call('createAgentToken', { node: 'restart-node' }))
      .token;
    const raw = makeImage(16 * MiB, 31);
    const created = await imageApi(ctl.address, ctl.token).call('createImage', {
      image: { name: 'restart-img' },
    });
    const image = await uploadImage(ctl.address, ctl.token, { id: created.id }, raw);

    agent = AgentProcess.start({
      controller: grpcFront.url.replace('http://', ''),
      token,
      disks: [disk.path],
      macs: [NODE_MAC],
    });
    await agent.waitFor('connected', (l) => l.msg === 'connected to the controller');
    const release = httpFront.stallAfter(4 * MiB);
    const task = await taskApi(ctl.address, ctl.token).call('createTask', {
      node: 'restart-node',
      spec: { deploy: { image: image.id, disk: disk.path } },
    });
    const writes = followWrites(ctl.address, ctl.token, task.id);
    await eventually('the download to stall mid-image', () =>
      httpFront?.stalled && writes.written() > 0 ? true : undefined,
    );
    writes.stop();

    // The controller goes away mid-download: nothing answers at its addresses for a while.
    grpcFront.setTarget('127.0.0.1:1');
    httpFront.setTarget('127.0.0.1:1');
    release();
    await ctl.stop();
    ctl = await start();

    const { task: done } = await finishedTask(ctl.address, ctl.token, task.id);
    expect(done.state, JSON.stringify(done.error)).toBe(TaskState.TASK_STATE_SUCCEEDED);
    // Re-attached, not sent again: the same agent process finished what it had started.
    expect(done.attempt).toBe(1);
    expect(agent.lines.filter((l) => l.msg === 'task started')).toHaveLength(1);
    expect(httpFront.requests.at(-1)?.range).toMatch(/^bytes=\d+-$/);
    expect((await readDevice(disk.path, 0, raw.length)).equals(raw)).toBe(true);
  });
});
