import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskFormat } from '../../build/gen/ingot/v1/image.ts';
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

// The real controller and the built agent executable against a loop device. Image downloads go
// through a proxy that can cut or hold a connection, standing in for a flaky network.

const MiB = 1 << 20;
const DISK_BYTES = 64 * MiB;
const NODE_MAC = '52:54:00:a9:00:01';

describe('deploying images with the agent executable', () => {
  let ctl: TestController;
  let proxy: FaultyProxy;
  let disk: LoopDevice;
  let agent: AgentProcess | undefined;
  let token = '';
  let nodeId = '';
  const images = () => imageApi(ctl.address, ctl.token);
  const tasks = () => taskApi(ctl.address, ctl.token);

  async function addImage(name: string, raw: Buffer, format: 'raw' | 'gzip' | 'zstd') {
    const data = format === 'gzip' ? gzipSync(raw) : format === 'zstd' ? zstdCompressSync(raw) : raw;
    const diskFormat = {
      raw: DiskFormat.DISK_FORMAT_RAW,
      gzip: DiskFormat.DISK_FORMAT_RAW_GZIP,
      zstd: DiskFormat.DISK_FORMAT_RAW_ZSTD,
    }[format];
    const created = await images().call('createImage', { image: { name, diskFormat } });
    return uploadImage(ctl.address, ctl.token, { id: created.id }, data);
  }

  async function deploy(image: string, target = disk.path) {
    const task = await tasks().call('createTask', {
      node: 'agent-node',
      spec: { deploy: { image, disk: target } },
    });
    return { created: task, ...(await finishedTask(ctl.address, ctl.token, task.id)) };
  }

  function startAgent(extra: string[] = []): AgentProcess {
    agent = AgentProcess.start({
      controller: ctl.address,
      token,
      disks: [disk.path],
      macs: [NODE_MAC],
      args: extra,
    });
    return agent;
  }

  async function waitConnected(): Promise<void> {
    await eventually('the agent to connect', async () => {
      const { agents } = await agentApi(ctl.address, ctl.token).call('listAgents', {});
      return agents.some((a) => a.nodeId === nodeId) || undefined;
    });
  }

  beforeAll(async () => {
    await ensureAgentBinary();
    proxy = await FaultyProxy.start();
    ctl = await startTestController({ args: ['--http-advertise-url', proxy.url] });
    proxy.setTarget(ctl.httpAddress);
    disk = await createLoopDevice(DISK_BYTES);
    const node = await new InventoryApi(ctl.address, ctl.token).call('createNode', {
      node: {
        name: 'agent-node',
        ip: '10.9.0.1',
        mac: NODE_MAC,
        cpus: 2,
        ramMb: 1024,
        diskGb: 1,
        bmcAddress: '10.9.1.1',
        bmcUsername: 'admin',
      },
    });
    nodeId = node.id;
    token = (await agentApi(ctl.address, ctl.token).call('createAgentToken', { node: 'agent-node' })).token;
    startAgent();
    await waitConnected();
  });

  afterAll(async () => {
    await agent?.stop();
    await ctl?.stop();
    await proxy?.stop();
    await disk?.detach();
    if (ctl) removeDataDir(ctl.dataDir);
  });

  it.each(['raw', 'gzip', 'zstd'] as const)(
    'writes a %s image byte for byte and records its progress',
    async (format) => {
      const raw = makeImage(12 * MiB, format.length);
      const image = await addImage(`img-${format}`, raw, format);
      expect(image.virtualSizeBytes).toBe(raw.length);

      const { task } = await deploy(image.id);

      expect(task.state, JSON.stringify(task.error)).toBe(TaskState.TASK_STATE_SUCCEEDED);
      expect(task.outcome?.sha256).toBe(image.sha256);
      expect(task.outcome?.bytesWritten).toBe(raw.length);
      // Each phase change is recorded; a deploy this small may finish before a watcher attaches.
      const { events } = await tasks().call('listTaskEvents', { id: task.id });
      const phases = events.map((e) => e.progress?.phase).filter(Boolean);
      expect(phases).toEqual(expect.arrayContaining(['checking', 'writing', 'syncing', 'done']));
      expect(events.find((e) => e.progress?.phase === 'writing')?.progress?.bytesTotal).toBe(raw.length);
      expect(events.at(-1)?.state).toBe(TaskState.TASK_STATE_SUCCEEDED);
      expect((await readDevice(disk.path, 0, raw.length)).equals(raw)).toBe(true);
    },
  );

  it.each([
    ['raw', ['DIGEST_MISMATCH']],
    ['zstd', ['IMAGE_DATA_INVALID', 'DIGEST_MISMATCH', 'SIZE_MISMATCH']],
  ] as const)(
    'wipes the partition tables when a %s image does not match its digest',
    async (format, reasons) => {
      const raw = makeImage(8 * MiB, 7);
      const image = await addImage(`tampered-${format}`, raw, format);
      // Bit rot (or tampering) in the store after the upload: one byte in the middle.
      const file = join(ctl.dataDir, 'images', image.id);
      const stored = readFileSync(file);
      const at = Math.floor(stored.length / 2);
      stored[at] = (stored[at] ?? 0) ^ 0xff;
      writeFileSync(file, stored);

      const { task } = await deploy(image.id);

      expect(task.state).toBe(TaskState.TASK_STATE_FAILED);
      expect(reasons).toContain(task.error?.reason);
      const zeros = Buffer.alloc(MiB);
      expect((await readDevice(disk.path, 0, MiB)).equals(zeros)).toBe(true);
      expect((await readDevice(disk.path, DISK_BYTES - MiB, MiB)).equals(zeros)).toBe(true);
    },
  );

  it('resumes a download cut mid-stream with Range from where it stopped', async () => {
    const raw = makeImage(16 * MiB, 3);
    const image = await addImage('resumed', raw, 'zstd');
    const before = proxy.requests.length;
    proxy.cutOnceAfter(Math.floor(image.sizeBytes / 3));

    const { task, progress } = await deploy(image.id);

    expect(task.state, JSON.stringify(task.error)).toBe(TaskState.TASK_STATE_SUCCEEDED);
    const requests = proxy.requests.slice(before);
    expect(requests, `${JSON.stringify(requests)}\n${agent?.output()}`).toHaveLength(2);
    expect(requests[0]?.range).toBeUndefined();
    expect(requests[1]?.range).toMatch(/^bytes=\d+-$/);
    expect(Number(/\d+/.exec(requests[1]?.range ?? '')?.[0])).toBeGreaterThan(0);
    expect(progress.some((p) => p.phase === 'resuming')).toBe(true);
    expect((await readDevice(disk.path, 0, raw.length)).equals(raw)).toBe(true);
  });

  it('sends the unfinished task again to an agent restarted mid-deploy', async () => {
    const raw = makeImage(16 * MiB, 5);
    const image = await addImage('restarted', raw, 'raw');
    const release = proxy.stallAfter(4 * MiB);
    const created = await tasks().call('createTask', {
      node: 'agent-node',
      spec: { deploy: { image: image.id, disk: disk.path } },
    });
    const writes = followWrites(ctl.address, ctl.token, created.id);
    await eventually('the download to stall mid-image', () =>
      proxy.stalled && writes.written() > 0 ? true : undefined,
    );
    writes.stop();

    await agent?.stop('SIGKILL');
    release();
    startAgent();
    const { task } = await finishedTask(ctl.address, ctl.token, created.id);

    expect(task.state, JSON.stringify(task.error)).toBe(TaskState.TASK_STATE_SUCCEEDED);
    expect(task.attempt).toBe(2);
    expect((await readDevice(disk.path, 0, raw.length)).equals(raw)).toBe(true);
  });

  it('refuses an image larger than the disk before writing anything', async () => {
    const raw = Buffer.alloc(DISK_BYTES + MiB);
    const image = await addImage('too-large', raw, 'zstd');
    const marker = await readDevice(disk.path, 0, MiB);

    // The controller knows the disk's size from the agent's hardware report.
    const refused = await tasks().fail('createTask', {
      node: 'agent-node',
      spec: { deploy: { image: image.id, disk: disk.path } },
    });
    expect(refused.reason).toBe('IMAGE_TOO_LARGE');

    // Under a name the controller does not know, the agent checks it itself.
    const alias = `/dev/ingot-test-${process.pid}`;
    const { symlinkSync, rmSync } = await import('node:fs');
    symlinkSync(disk.path, alias);
    try {
      const { task } = await deploy(image.id, alias);
      expect(task.state).toBe(TaskState.TASK_STATE_FAILED);
      expect(task.error?.reason).toBe('IMAGE_TOO_LARGE');
    } finally {
      rmSync(alias, { force: true });
    }
    expect((await readDevice(disk.path, 0, MiB)).equals(marker)).toBe(true);
  });
});
