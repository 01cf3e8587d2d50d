import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectResponse } from '../../build/gen/ingot/v1/agent.ts';
import { TaskKind, TaskOutcome, TaskState } from '../../build/gen/ingot/v1/task.ts';
import { createToken } from '../../controller/src/store/tokens.ts';
import {
  agentApi,
  eventually,
  FakeAgentStream,
  imageApi,
  makeImage,
  taskApi,
  uploadImage,
  watchTask,
} from '../support/agent.ts';
import {
  BACKENDS,
  InventoryApi,
  removeDataDir,
  startTestController,
  type TestController,
} from '../support/controller.ts';

// The AgentService protocol and TaskService, driven by a scripted agent over a real gRPC stream: the
// failure paths an executable cannot easily be made to walk (wrong MACs, a Hello that never comes,
// results held over a reconnect), on both databases.

const MAC_A = '52:54:00:a1:00:01';
const MAC_B = '52:54:00:a1:00:02';
/** A TaskOutcome with every field at its default. */
const emptyOutcome = TaskOutcome.fromPartial({});

describe.each(BACKENDS)('agent protocol and tasks on %s', (backend) => {
  let ctl: TestController;
  const streams: FakeAgentStream[] = [];
  let imageId = '';
  let imageSha = '';
  const agents = () => agentApi(ctl.address, ctl.token);
  const tasks = () => taskApi(ctl.address, ctl.token);

  function connect(token: string, macs = [MAC_A], extra: Record<string, unknown> = {}): FakeAgentStream {
    const stream = new FakeAgentStream(ctl.address);
    streams.push(stream);
    stream.hello({ agentToken: token, macs, agentVersion: 'test', ...extra });
    return stream;
  }

  async function welcomed(stream: FakeAgentStream): Promise<void> {
    await stream.next('Welcome', (m) => m.welcome);
  }

  async function mint(node: string): Promise<string> {
    return (await agents().call('createAgentToken', { node })).token;
  }

  async function connectedNodes(): Promise<string[]> {
    return (await agents().call('listAgents', {})).agents.map((a) => a.nodeName);
  }

  beforeAll(async () => {
    ctl = await startTestController({ backend });
    const inventory = new InventoryApi(ctl.address, ctl.token);
    for (const [name, mac, octet] of [
      ['node-a', MAC_A, 1],
      ['node-b', MAC_B, 2],
    ] as const) {
      await inventory.call('createNode', {
        node: {
          name,
          ip: `10.8.0.${octet}`,
          mac,
          cpus: 2,
          ramMb: 1024,
          diskGb: 1,
          bmcAddress: `10.8.1.${octet}`,
          bmcUsername: 'admin',
        },
      });
    }
    const created = await imageApi(ctl.address, ctl.token).call('createImage', {
      image: { name: 'proto-img' },
    });
    const image = await uploadImage(ctl.address, ctl.token, { id: created.id }, makeImage(1 << 20));
    imageId = image.id;
    imageSha = image.sha256;
  });

  afterAll(async () => {
    for (const stream of streams) stream.close();
    await ctl?.stop();
    if (ctl) removeDataDir(ctl.dataDir);
  });

  it('refuses wrong, replaced and expired tokens, another machine, and a stream without Hello', async () => {
    const garbage = await connect('ingot_agent_not-a-token').ended;
    expect(garbage.code).toBe(status.UNAUTHENTICATED);

    const first = await mint('node-a');
    const second = await mint('node-a');
    const replaced = await connect(first).ended;
    expect(replaced.code).toBe(status.UNAUTHENTICATED);
    expect(replaced.error?.message).toMatch(/replaced by a newer one/);

    const wrongMachine = await connect(second, [MAC_B]).ended;
    expect(wrongMachine.code).toBe(status.PERMISSION_DENIED);
    expect(wrongMachine.error?.message).toContain('node-a');

    await ctl.db.fork().execute(`update agent_token set expires_at = now() - interval '1 minute'`);
    const expired = await connect(second).ended;
    expect(expired.code).toBe(status.UNAUTHENTICATED);
    expect(expired.error?.message).toMatch(/expired/);

    const silent = new FakeAgentStream(ctl.address);
    streams.push(silent);
    silent.send({ heartbeat: { time: new Date() } });
    const noHello = await silent.ended;
    expect(noHello.code).toBe(status.INVALID_ARGUMENT);
    expect(noHello.error?.violations[0]?.field).toBe('hello');

    expect(await connectedNodes()).toEqual([]);
  });

  it('holds one stream per node: a second agent is refused until the first goes', async () => {
    const token = await mint('node-a');
    const first = connect(token, [MAC_A], { instanceId: 'agent-1' });
    await welcomed(first);

    const second = await connect(token, [MAC_A], { instanceId: 'agent-2' }).ended;
    expect(second.code).toBe(status.ALREADY_EXISTS);
    expect(second.error?.reason).toBe('AGENT_ALREADY_CONNECTED');
    expect(await connectedNodes()).toEqual(['node-a']);

    // The same agent process reconnecting (its old stream not yet noticed gone) takes over.
    const again = connect(token, [MAC_A], { instanceId: 'agent-1' });
    await welcomed(again);
    first.send({ heartbeat: { time: new Date() } });
    const superseded = await first.ended;
    expect(superseded.code).toBe(status.ABORTED);
    expect(superseded.error?.reason).toBe('AGENT_SESSION_ENDED');

    again.close();
    await eventually('the lease to be released', async () =>
      (await connectedNodes()).length === 0 ? true : undefined,
    );
    const third = connect(token, [MAC_A], { instanceId: 'agent-3' });
    await welcomed(third);
    third.end();
    expect((await third.ended).code).toBe(status.OK);
  });

  it('sends a task, sends it again after a reconnect unless the agent still runs it, and records its result', async () => {
    const token = await mint('node-a');
    const created = await tasks().call('createTask', { node: 'node-a', spec: { inspect: {} } });
    expect(created.state).toBe(TaskState.TASK_STATE_QUEUED);

    const first = connect(token);
    const sent = await first.next('the assignment', (m) => m.assignment);
    expect(sent).toMatchObject({ taskId: created.id, attempt: 1, kind: TaskKind.TASK_KIND_INSPECT });
    first.close();
    await eventually('the lease to be released', async () =>
      (await connectedNodes()).length === 0 ? true : undefined,
    );

    // A restarted agent runs nothing: it gets the task again.
    const restarted = connect(token);
    const resent = await restarted.next('the assignment again', (m) => m.assignment);
    expect(resent).toMatchObject({ taskId: created.id, attempt: 2 });
    restarted.close();
    await eventually('the lease to be released', async () =>
      (await connectedNodes()).length === 0 ? true : undefined,
    );

    // An agent that still runs it only re-attaches; its progress reaches a watcher, its result is recorded.
    const watch = watchTask(ctl.address, ctl.token, created.id);
    const seen: string[] = [];
    const watching = (async () => {
      for await (const event of watch.events) {
        // A report sent before the watch subscribed arrives inside the first task snapshot instead.
        if (event.progress) seen.push(event.progress.phase);
        if (event.task?.progress) seen.push(event.task.progress.phase);
        if (event.task) seen.push(`state ${event.task.state}`);
      }
    })();
    const reattached = connect(token, [MAC_A], { runningTaskIds: [created.id] });
    await welcomed(reattached);
    reattached.send({
      progress: {
        taskId: created.id,
        phase: 'inspecting',
        bytesDone: 0,
        bytesTotal: 0,
        rateBytesPerSecond: 0,
        time: new Date(),
        message: '',
      },
    });
    await eventually('the watcher to see the progress', () =>
      seen.includes('inspecting') ? true : undefined,
    );
    const inventory = {
      cpuCount: 8,
      cpuModel: 'Test CPU',
      ramBytes: 16 << 30,
      disks: [
        {
          path: '/dev/sda',
          sizeBytes: 1 << 30,
          model: 'Disk',
          serial: 'S1',
          rotational: false,
          logicalBlockBytes: 512,
        },
      ],
      nics: [{ name: 'eth0', mac: MAC_A, linkUp: true, speedMbps: 1000 }],
    };
    reattached.send({
      result: { taskId: created.id, outcome: { ...emptyOutcome, inventory }, error: undefined },
    });
    const ack = await reattached.next('the acknowledgement', (m) => m.resultAck);
    expect(ack.taskId).toBe(created.id);
    // Dispatching the Hello came before recording the result, so nothing was sent again.
    expect(reattached.received.filter((m: ConnectResponse) => m.assignment)).toEqual([]);
    await watching;
    expect(seen.at(-1)).toBe(`state ${TaskState.TASK_STATE_SUCCEEDED}`);

    const done = await tasks().call('getTask', { id: created.id });
    expect(done).toMatchObject({ state: TaskState.TASK_STATE_SUCCEEDED, attempt: 2 });
    expect(done.outcome?.inventory?.cpuModel).toBe('Test CPU');
    const listed = await agents().call('listAgents', {});
    expect(listed.agents[0]?.inventory?.disks[0]?.sizeBytes).toBe(1 << 30);

    // A result the agent could not deliver before its stream broke comes with its next Hello.
    const wipe = await tasks().call('createTask', { node: 'node-a', spec: { wipe: { disk: '/dev/sdb' } } });
    await reattached.next('the wipe', (m) => (m.assignment?.taskId === wipe.id ? m.assignment : undefined));
    reattached.close();
    await eventually('the lease to be released', async () =>
      (await connectedNodes()).length === 0 ? true : undefined,
    );
    const later = connect(token, [MAC_A], {
      pendingResults: [
        {
          taskId: wipe.id,
          error: { reason: 'DISK_NOT_ALLOWED', message: '/dev/sdb is not allowed', metadata: {} },
        },
      ],
    });
    await later.next('the acknowledgement', (m) => m.resultAck);
    expect(later.received.filter((m) => m.assignment)).toEqual([]);
    expect(await tasks().call('getTask', { id: wipe.id })).toMatchObject({
      state: TaskState.TASK_STATE_FAILED,
      error: { reason: 'DISK_NOT_ALLOWED' },
    });
    later.close();
    await eventually('the lease to be released', async () =>
      (await connectedNodes()).length === 0 ? true : undefined,
    );

    const { events } = await tasks().call('listTaskEvents', { id: created.id });
    expect(events.map((e) => e.state).filter(Boolean)).toEqual([
      TaskState.TASK_STATE_QUEUED,
      TaskState.TASK_STATE_RUNNING,
      TaskState.TASK_STATE_RUNNING,
      TaskState.TASK_STATE_SUCCEEDED,
    ]);
  });

  it('cancels queued tasks at once, running ones through their agent, and orphaned ones at once', async () => {
    const queued = await tasks().call('createTask', { node: 'node-b', spec: { reboot: {} } });
    expect((await tasks().call('cancelTask', { id: queued.id })).state).toBe(TaskState.TASK_STATE_CANCELLED);
    const again = await tasks().fail('cancelTask', { id: queued.id });
    expect(again).toMatchObject({ code: status.FAILED_PRECONDITION, reason: 'TASK_FINISHED' });

    const token = await mint('node-b');
    const agent = connect(token, [MAC_B]);
    const running = await tasks().call('createTask', { node: 'node-b', spec: { poweroff: {} } });
    await agent.next('the assignment', (m) => m.assignment);
    const asked = await tasks().call('cancelTask', { id: running.id });
    expect(asked).toMatchObject({ state: TaskState.TASK_STATE_RUNNING, cancelRequested: true });
    await agent.next('the cancellation', (m) => m.cancellation);
    agent.send({
      result: {
        taskId: running.id,
        outcome: undefined,
        error: { reason: 'CANCELLED', message: 'cancelled', metadata: {} },
      },
    });
    await agent.next('the acknowledgement', (m) => m.resultAck);
    expect((await tasks().call('getTask', { id: running.id })).state).toBe(TaskState.TASK_STATE_CANCELLED);

    const orphan = await tasks().call('createTask', { node: 'node-b', spec: { inspect: {} } });
    await agent.next('the next assignment', (m) =>
      m.assignment?.taskId === orphan.id ? m.assignment : undefined,
    );
    agent.close();
    await eventually('the lease to be released', async () =>
      (await connectedNodes()).length === 0 ? true : undefined,
    );
    expect((await tasks().call('cancelTask', { id: orphan.id })).state).toBe(TaskState.TASK_STATE_CANCELLED);

    // The agent still ran it when it comes back: it is told to stop.
    const back = connect(token, [MAC_B], { runningTaskIds: [orphan.id] });
    const stop = await back.next('the cancellation', (m) => m.cancellation);
    expect(stop.taskId).toBe(orphan.id);
    back.close();
    await eventually('the lease to be released', async () =>
      (await connectedNodes()).length === 0 ? true : undefined,
    );
  });

  it('fails a deploy whose reported digest is not the image’s', async () => {
    const token = await mint('node-b');
    const agent = connect(token, [MAC_B]);
    const task = await tasks().call('createTask', {
      node: 'node-b',
      spec: { deploy: { image: 'proto-img', disk: '/dev/vdb' } },
    });
    const sent = await agent.next('the deploy', (m) => m.assignment?.deploy);
    expect(sent).toMatchObject({ format: 'raw', sha256: imageSha, sizeBytes: 1 << 20, disk: '/dev/vdb' });
    expect(sent.url).toContain(`/v1/images/${imageId}/file?expires=`);
    agent.send({
      result: {
        taskId: task.id,
        outcome: { ...emptyOutcome, sha256: '0'.repeat(64), bytesWritten: 1 << 20 },
        error: undefined,
      },
    });
    await agent.next('the acknowledgement', (m) => m.resultAck);
    expect(await tasks().call('getTask', { id: task.id })).toMatchObject({
      state: TaskState.TASK_STATE_FAILED,
      error: { reason: 'DIGEST_MISMATCH' },
    });
    agent.close();
    await eventually('the lease to be released', async () =>
      (await connectedNodes()).length === 0 ? true : undefined,
    );
  });

  it('validates tasks and keeps TaskService and agent tokens for admins', async () => {
    const fail = (spec: Record<string, unknown>, node = 'node-a') =>
      tasks().fail('createTask', { node, spec });
    expect(await fail({})).toMatchObject({ code: status.INVALID_ARGUMENT, violations: [{ field: 'spec' }] });
    expect(await fail({ inspect: {}, reboot: {} })).toMatchObject({ code: status.INVALID_ARGUMENT });
    expect(await fail({ wipe: { disk: 'sda' } })).toMatchObject({
      violations: [{ field: 'spec.wipe.disk' }],
    });
    expect(await fail({ deploy: { image: 'proto-img', disk: '/dev/../etc/passwd' } })).toMatchObject({
      violations: [{ field: 'spec.deploy.disk' }],
    });
    expect(await fail({ deploy: { image: 'no-such-image', disk: '/dev/sda' } })).toMatchObject({
      code: status.NOT_FOUND,
      reason: 'IMAGE_NOT_FOUND',
    });
    await imageApi(ctl.address, ctl.token).call('createImage', { image: { name: 'empty-img' } });
    expect(await fail({ deploy: { image: 'empty-img', disk: '/dev/sda' } })).toMatchObject({
      code: status.FAILED_PRECONDITION,
      reason: 'IMAGE_NOT_ACTIVE',
    });
    expect(await fail({ inspect: {} }, 'no-such-node')).toMatchObject({
      code: status.NOT_FOUND,
      reason: 'NODE_NOT_FOUND',
    });
    expect(await tasks().fail('getTask', { id: 'nope' })).toMatchObject({ code: status.INVALID_ARGUMENT });
    expect(await tasks().fail('getTask', { id: '01900000-0000-7000-8000-000000000000' })).toMatchObject({
      code: status.NOT_FOUND,
    });

    const listed = await tasks().call('listTasks', { node: 'node-b', state: TaskState.TASK_STATE_CANCELLED });
    expect(listed.tasks.length).toBeGreaterThanOrEqual(3);
    expect(
      listed.tasks.every((t) => t.nodeName === 'node-b' && t.state === TaskState.TASK_STATE_CANCELLED),
    ).toBe(true);

    const member = await createToken(ctl.db.fork(), { role: 'member', description: 'test member' });
    expect(await taskApi(ctl.address, member).fail('listTasks', {})).toMatchObject({
      code: status.PERMISSION_DENIED,
    });
    expect(await agentApi(ctl.address, member).fail('createAgentToken', { node: 'node-a' })).toMatchObject({
      code: status.PERMISSION_DENIED,
    });
    expect(await agents().fail('createAgentToken', { node: 'node-z' })).toMatchObject({
      code: status.NOT_FOUND,
    });
    expect(
      await agents().fail('createAgentToken', { node: 'node-a', ttl: { seconds: 90 * 86400, nanos: 0 } }),
    ).toMatchObject({
      code: status.INVALID_ARGUMENT,
      violations: [{ field: 'ttl' }],
    });
  });
});
