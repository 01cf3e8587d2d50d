import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { zstdDecompressSync } from 'node:zlib';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskFormat, type Image, ImageStatus, OsType } from '../../build/gen/ingot/v1/image.ts';
import { TaskState } from '../../build/gen/ingot/v1/task.ts';
import {
  type AgentProcess,
  createLoopDevice,
  ensureAgentBinary,
  eventually,
  finishedTask,
  imageApi,
  type LoopDevice,
  makeImage,
  readDevice,
  startNodeAgent,
  taskApi,
} from '../support/agent.ts';
import { bmctlAgainst } from '../support/bmctl.ts';
import { removeDataDir, startTestController, type TestController } from '../support/controller.ts';
import { freeTcpPort } from '../support/provisioning-lab.ts';

// Capturing into the image store: the agent streams a loop disk with a real partition table to the
// controller's capture port (raw and zstd) and the image becomes ACTIVE only when the bytes match the
// agent's count and digest; stock OpenBSD and busybox netcat feed ReceiveImage and receive from the
// agent; broken, short, altered and absent streams KILL the image with the reason.

const run = promisify(execFile);
const MiB = 1 << 20;
const NODE_MAC = '52:54:00:a9:00:51';
/** Capture ports of the test controller: few, so that "every port busy" is reachable. */
const PORTS = 3;
/** Where the agent's block reader fails (the test hook): inside `faulty` only, past every other disk. */
const FAULT_OFFSET = 40 * MiB;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** `PORTS` consecutive ports nothing listens on. */
async function freePortRange(count: number): Promise<number> {
  for (;;) {
    const first = 20000 + Math.floor(Math.random() * 40000);
    const free = await Promise.all(
      Array.from(
        { length: count },
        (_, i) =>
          new Promise<boolean>((resolve) => {
            const server = createServer();
            server.once('error', () => resolve(false));
            server.listen(first + i, '127.0.0.1', () => server.close(() => resolve(true)));
          }),
      ),
    );
    if (free.every(Boolean)) return first;
  }
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe('capturing into the image store', () => {
  let ctl: TestController;
  let agent: AgentProcess;
  let work: string;
  let firstPort: number;
  /** 32 MiB, GPT: an EFI system partition (1–5 MiB) and a Linux one (5–13 MiB) full of data; zeros after. */
  let source: LoopDevice;
  /** 32 MiB, where captured images are deployed back. */
  let target: LoopDevice;
  /** 48 MiB, unreadable from 40 MiB on (the block reader's test hook). */
  let faulty: LoopDevice;
  const images = () => imageApi(ctl.address, ctl.token);
  const tasks = () => taskApi(ctl.address, ctl.token);
  const bmctl = bmctlAgainst(() => ({ address: ctl.address, dataDir: ctl.dataDir }), {
    cwd: () => work,
  }).run;

  const createImage = (name: string) => images().call('createImage', { image: { name } }) as Promise<Image>;

  const bmctlCapture = (...args: string[]) =>
    bmctl('task', 'create', 'capture', '--node', 'capture-node', ...args);
  const refusedCapture = (spec: Record<string, unknown>) =>
    tasks().fail('createTask', { node: 'capture-node', spec: { capture: spec } });

  async function captureTask(spec: Record<string, unknown>) {
    const task = await tasks().call('createTask', { node: 'capture-node', spec: { capture: spec } });
    return (await finishedTask(ctl.address, ctl.token, task.id)).task;
  }

  /** The image once it left SAVING. */
  async function settled(id: string): Promise<Image> {
    return eventually(`image ${id} ACTIVE or KILLED`, async () => {
      const image = (await images().call('getImage', { id })) as Image;
      return image.status === ImageStatus.IMAGE_STATUS_SAVING ? undefined : image;
    });
  }

  const stored = (id: string) => readFileSync(join(ctl.dataDir, 'images', id));

  /** `dd if=DISK | NC HOST PORT` with a stock netcat (`nc -N`, or busybox's nc). */
  function ddInto(receiver: string, disk: string, nc: 'openbsd' | 'busybox', ddArgs: string[] = []) {
    const [host, port] = receiver.split(':') as [string, string];
    const dd = spawn('dd', [`if=${disk}`, 'bs=8M', 'status=none', ...ddArgs], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const args = nc === 'openbsd' ? ['nc', ['-N', host, port]] : ['busybox', ['nc', host, port]];
    const sender = spawn(args[0] as string, args[1] as string[], { stdio: [dd.stdout, 'ignore', 'inherit'] });
    return { dd, sender, exit: exitOf(sender) };
  }

  beforeAll(async () => {
    await ensureAgentBinary();
    work = mkdtempSync(join(tmpdir(), 'ingot-image-capture-'));
    firstPort = await freePortRange(PORTS);
    const config = join(work, 'controller.json');
    writeFileSync(
      config,
      JSON.stringify({ capture: { firstPort, lastPort: firstPort + PORTS - 1, connectTimeoutMs: 120_000 } }),
    );
    ctl = await startTestController({ args: ['--config', config] });
    source = await createLoopDevice(32 * MiB);
    target = await createLoopDevice(32 * MiB);
    faulty = await createLoopDevice(48 * MiB);
    const handle = await open(source.path, 'r+');
    await handle.write(makeImage(12 * MiB, 51), 0, 12 * MiB, MiB);
    await handle.close();
    await run('sgdisk', [
      '-o',
      '-n',
      '1:2048:+4M',
      '-t',
      '1:ef00',
      '-n',
      '2:0:+8M',
      '-t',
      '2:8300',
      source.path,
    ]);
    agent = await startNodeAgent(
      ctl,
      { name: 'capture-node', ip: '10.9.6.2', mac: NODE_MAC, bmcAddress: '10.9.7.2' },
      {
        disks: [source.path, target.path, faulty.path],
        env: { INGOT_AGENT_UNREADABLE_FOR_TESTS: `${FAULT_OFFSET}:${MiB}` },
      },
    );
  });

  afterAll(async () => {
    await agent?.stop();
    await ctl?.stop();
    await source?.detach();
    await target?.detach();
    await faulty?.detach();
    if (ctl) removeDataDir(ctl.dataDir);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('captures a GPT disk raw into the store (ACTIVE, same bytes) and deploys it back byte for byte', async () => {
    const disk = await readDevice(source.path, 0, source.sizeBytes);
    const image = await createImage('cap-raw');
    const task = await captureTask({ disk: source.path, image: 'cap-raw' });
    expect(task.error).toBeUndefined();
    expect(task.spec?.capture).toMatchObject({ image: image.id, compress: false });
    expect(task.spec?.capture?.receiver).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(task.outcome).toMatchObject({
      sha256: sha256(disk),
      bytesSent: source.sizeBytes,
      bytesRead: source.sizeBytes,
    });
    const active = await settled(image.id);
    expect(active).toMatchObject({
      status: ImageStatus.IMAGE_STATUS_ACTIVE,
      diskFormat: DiskFormat.DISK_FORMAT_RAW,
      sizeBytes: source.sizeBytes,
      virtualSizeBytes: source.sizeBytes,
      sha256: sha256(disk),
      statusReason: '',
    });
    expect(stored(image.id).equals(disk)).toBe(true);

    const deploy = await tasks().call('createTask', {
      node: 'capture-node',
      spec: { deploy: { image: 'cap-raw', disk: target.path } },
    });
    const deployed = (await finishedTask(ctl.address, ctl.token, deploy.id)).task;
    expect(deployed.error).toBeUndefined();
    expect(sha256(await readDevice(target.path, 0, target.sizeBytes))).toBe(sha256(disk));
  });

  it('captures zstd-compressed up to the last partition; the stored stream decompresses to the disk and downloads intact', async () => {
    const lastPartitionEnd = 13 * MiB;
    const head = await readDevice(source.path, 0, lastPartitionEnd);
    const image = await createImage('cap-zstd');
    const task = await captureTask({
      disk: source.path,
      image: image.id,
      compress: true,
      toLastPartition: true,
    });
    expect(task.error).toBeUndefined();
    expect(task.outcome?.partitionTable?.lastPartitionEndBytes).toBe(lastPartitionEnd);
    const active = await settled(image.id);
    expect(active.status, active.statusReason).toBe(ImageStatus.IMAGE_STATUS_ACTIVE);
    expect(active.diskFormat).toBe(DiskFormat.DISK_FORMAT_RAW_ZSTD);
    const bytes = stored(image.id);
    expect(bytes.length).toBe(task.outcome?.bytesSent);
    expect(task.outcome?.bytesRead).toBe(lastPartitionEnd);
    expect(task.outcome?.sha256).toBe(sha256(bytes));
    expect(active.sha256).toBe(sha256(bytes));
    expect(bytes.length).toBeLessThan(lastPartitionEnd);
    expect(zstdDecompressSync(bytes).equals(head)).toBe(true);
    expect(active.virtualSizeBytes).toBe(lastPartitionEnd);

    const { url } = await images().call('createImageUrl', { id: image.id });
    const downloaded = Buffer.from(await (await fetch(url)).arrayBuffer());
    expect(sha256(downloaded)).toBe(active.sha256);
  });

  it('ReceiveImage takes a stock `dd | nc` (OpenBSD and busybox) and checks the expected size and digest', async () => {
    const disk = await readDevice(source.path, 0, source.sizeBytes);
    for (const nc of ['openbsd', 'busybox'] as const) {
      const image = await createImage(`dd-${nc}`);
      const opened = await images().call('receiveImage', {
        id: image.id,
        expectedSizeBytes: source.sizeBytes,
        expectedSha256: sha256(disk),
      });
      expect(opened.image?.status).toBe(ImageStatus.IMAGE_STATUS_SAVING);
      expect(opened.receiver).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(opened.expireTime?.getTime()).toBeGreaterThan(Date.now() + 3500_000);
      const { exit } = ddInto(opened.receiver, source.path, nc);
      expect(await exit).toBe(0);
      const active = await settled(image.id);
      expect(active.status, active.statusReason).toBe(ImageStatus.IMAGE_STATUS_ACTIVE);
      expect(stored(image.id).equals(disk)).toBe(true);
    }
  });

  it('KILLS the image when the bytes are not what ReceiveImage was told, the sender dies, or the stream breaks', async () => {
    const wrongDigest = await createImage('wrong-digest');
    const opened = await images().call('receiveImage', {
      id: wrongDigest.id,
      expectedSha256: 'ab'.repeat(32),
    });
    await ddInto(opened.receiver, source.path, 'openbsd').exit;
    const killed = await settled(wrongDigest.id);
    expect(killed.status).toBe(ImageStatus.IMAGE_STATUS_KILLED);
    expect(killed.statusReason).toContain(`not the expected ${'ab'.repeat(32)}`);

    // A sender killed mid-stream: netcat closes the connection as if the disk had ended; the size tells.
    const cut = await createImage('cut-short');
    const port = await images().call('receiveImage', { id: cut.id, expectedSizeBytes: source.sizeBytes });
    const slow = ddInto(port.receiver, '/dev/zero', 'openbsd', ['bs=1M', 'count=1000000']);
    const partial = join(ctl.dataDir, 'images', `${cut.id}.partial`);
    await eventually(
      'some bytes to arrive',
      () => (existsSync(partial) && statSync(partial).size > 0) || undefined,
    );
    slow.sender.kill('SIGKILL');
    slow.dd.kill('SIGKILL');
    const short = await settled(cut.id);
    expect(short.status).toBe(ImageStatus.IMAGE_STATUS_KILLED);
    expect(short.statusReason).toMatch(/received \d+ bytes, expected 33554432/);

    // A connection reset (what the agent sends when it gives up mid-stream).
    const reset = await createImage('reset');
    const resetPort = await images().call('receiveImage', { id: reset.id });
    const [host, p] = resetPort.receiver.split(':') as [string, string];
    const socket = connect(Number(p), host);
    await new Promise((resolve) => socket.once('connect', resolve));
    await new Promise<void>((resolve) => socket.write(Buffer.alloc(MiB, 7), () => resolve()));
    socket.resetAndDestroy();
    const broken = await settled(reset.id);
    expect(broken.status).toBe(ImageStatus.IMAGE_STATUS_KILLED);
    expect(broken.statusReason).toMatch(
      /the connection from 127\.0\.0\.1 broke after \d+ bytes \(ECONNRESET\)/,
    );
  });

  it('KILLS the image when the capture task fails mid-stream, and the image can be captured again', async () => {
    const image = await createImage('cap-faulty');
    const task = await captureTask({ disk: faulty.path, image: image.id, strict: true, blockSizeBytes: MiB });
    expect(task.state).toBe(TaskState.TASK_STATE_FAILED);
    expect(task.error?.reason).toBe('DISK_READ_FAILED');
    const killed = await settled(image.id);
    expect(killed.status).toBe(ImageStatus.IMAGE_STATUS_KILLED);
    expect(killed.statusReason).toContain(`the capture task ${task.id} failed: DISK_READ_FAILED`);

    const again = await captureTask({ disk: faulty.path, image: image.id, count: 40, blockSizeBytes: MiB });
    expect(again.error).toBeUndefined();
    const active = await settled(image.id);
    expect(active.status, active.statusReason).toBe(ImageStatus.IMAGE_STATUS_ACTIVE);
    expect(active.sizeBytes).toBe(40 * MiB);
  });

  it('streams to a busybox `nc -l -p PORT > file` receiver byte for byte', async () => {
    const disk = await readDevice(source.path, 0, source.sizeBytes);
    const port = await freeTcpPort('127.0.0.1');
    const out = join(work, 'busybox.img');
    const fd = openSync(out, 'w');
    const nc = spawn('busybox', ['nc', '-l', '-p', String(port)], { stdio: ['ignore', fd, 'inherit'] });
    closeSync(fd);
    const ncExit = exitOf(nc);
    await eventually('busybox nc to listen', async () =>
      (await run('ss', ['-Hltn', `sport = :${port}`])).stdout.includes(`:${port}`) ? true : undefined,
    );
    const task = await captureTask({ disk: source.path, receiver: `127.0.0.1:${port}` });
    expect(task.error).toBeUndefined();
    expect(await ncExit).toBe(0);
    expect(readFileSync(out).equals(disk)).toBe(true);
    expect(task.outcome).toMatchObject({ sha256: sha256(disk), bytesRead: disk.length });
  });

  it('takes one connection per port, closes ports nobody uses by their deadline, and says when all are busy', async () => {
    const first = await createImage('one-connection');
    const opened = await images().call('receiveImage', { id: first.id, expectedSizeBytes: 4 });
    const [host, port] = opened.receiver.split(':') as [string, string];
    const sender = connect(Number(port), host);
    await new Promise((resolve) => sender.once('connect', resolve));
    const refused = await new Promise<string>((resolve) => {
      const second = connect(Number(port), host);
      second.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? ''));
      second.once('close', () => resolve('closed'));
    });
    expect(['ECONNREFUSED', 'ECONNRESET', 'closed']).toContain(refused);
    sender.end(Buffer.from('abcd'));
    expect((await settled(first.id)).status).toBe(ImageStatus.IMAGE_STATUS_ACTIVE);

    const waiting: Image[] = [];
    for (let i = 0; i < PORTS; i++) {
      const image = await createImage(`idle-${i}`);
      await images().call('receiveImage', { id: image.id, ttl: { seconds: 2, nanos: 0 } });
      waiting.push(image);
    }
    const busyImage = await createImage('busy');
    expect(await images().fail('receiveImage', { id: busyImage.id })).toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      reason: 'CAPTURE_PORTS_BUSY',
    });
    expect(await refusedCapture({ disk: source.path, image: busyImage.id })).toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      reason: 'CAPTURE_PORTS_BUSY',
    });
    // The refused capture left the image as it was.
    expect(((await images().call('getImage', { id: busyImage.id })) as Image).status).toBe(
      ImageStatus.IMAGE_STATUS_QUEUED,
    );
    for (const image of waiting) {
      const killed = await settled(image.id);
      expect(killed.status).toBe(ImageStatus.IMAGE_STATUS_KILLED);
      expect(killed.statusReason).toMatch(/^nobody connected to 127\.0\.0\.1:\d+ by /);
    }
    // The ports are free again.
    const reopened = await images().call('receiveImage', { id: busyImage.id, ttl: { seconds: 1, nanos: 0 } });
    expect(Number(reopened.receiver.split(':')[1])).toBeGreaterThanOrEqual(firstPort);
    await settled(busyImage.id);
  });

  it('`bmctl task create capture --name --compress --watch` creates the image and waits for it; `bmctl image receive-port` prints the dd line', async () => {
    const watched = await bmctlCapture(
      '--disk',
      source.path,
      '--name',
      'bm-win',
      '--os',
      'windows',
      '--compress',
      '--watch',
    );
    expect(watched.code, watched.stderr).toBe(0);
    expect(watched.stdout).toMatch(/succeeded: \d+ bytes sent \(33554432 read\), sha256 [0-9a-f]{64}/);
    expect(watched.stdout).toMatch(
      /image bm-win active: \d+ bytes stored, 33554432 on disk, sha256 [0-9a-f]{64}/,
    );
    const created = (await images().call('getImage', { id: 'bm-win' })) as Image;
    expect(created).toMatchObject({
      osType: OsType.OS_TYPE_WINDOWS,
      diskFormat: DiskFormat.DISK_FORMAT_RAW_ZSTD,
    });

    // The same name again: the image is ACTIVE, so the controller refuses and says why.
    const again = await bmctlCapture('--disk', source.path, '--name', 'bm-win');
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already has its bytes');

    const disk = await readDevice(source.path, 0, source.sizeBytes);
    const port = await bmctl(
      'image',
      'receive-port',
      'bm-port',
      '--size',
      String(source.sizeBytes),
      '--sha256',
      sha256(disk),
    );
    expect(port.code, port.stderr).toBe(0);
    const line = /dd if=\/dev\/sdX bs=8M \| nc -N 127\.0\.0\.1 (\d+)/.exec(port.stdout);
    expect(line, port.stdout).not.toBeNull();
    expect(port.stdout).toContain('image bm-port waits on 127.0.0.1:');
    await ddInto(`127.0.0.1:${line?.[1]}`, source.path, 'openbsd').exit;
    const active = await settled('bm-port');
    expect(active.status, active.statusReason).toBe(ImageStatus.IMAGE_STATUS_ACTIVE);

    for (const [args, message] of [
      [['--receiver', '127.0.0.1:9', '--name', 'x'], '--receiver and --name exclude each other'],
      [['--receiver', '127.0.0.1:9', '--compress'], '--compress and --os go with --name only'],
      [[], '--name IMAGE (into the image store) or --receiver HOST:PORT'],
    ] as const) {
      const usage = await bmctlCapture('--disk', '/dev/sda', ...args);
      expect(usage.code).toBe(2);
      expect(usage.stderr).toContain(message);
    }
    expect((await bmctl('image', 'receive-port', 'bm-port', '--ttl', 'soon')).code).toBe(2);
  });

  it('deleting an image while it is being received stops the receiver: port closed, no file left', async () => {
    const image = await createImage('deleted-mid-stream');
    const opened = await images().call('receiveImage', { id: image.id });
    const [host, port] = opened.receiver.split(':') as [string, string];
    const sender = connect(Number(port), host);
    await new Promise((resolve) => sender.once('connect', resolve));
    sender.write(Buffer.alloc(1 << 20, 7));
    const closed = new Promise((resolve) => sender.once('close', resolve));
    sender.on('error', () => {});
    await images().call('deleteImage', { id: image.id });
    await closed;
    expect(await images().fail('getImage', { id: image.id })).toMatchObject({ code: status.NOT_FOUND });
    const dir = join(ctl.dataDir, 'images');
    expect(readdirSync(dir).filter((f) => f.startsWith(image.id))).toEqual([]);
  });

  it('KILLS what a stopping controller was still receiving', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ingot-capture-stop-'));
    const other = await startTestController({ dataDir });
    try {
      const api = imageApi(other.address, other.token);
      await api.call('createImage', { image: { name: 'cut-by-stop' } });
      const opened = await api.call('receiveImage', { id: 'cut-by-stop' });
      const [host, port] = opened.receiver.split(':') as [string, string];
      const sender = connect(Number(port), host);
      await new Promise<void>((resolve) => sender.write(Buffer.alloc(MiB, 1), () => resolve()));
      sender.on('error', () => {});
      await other.stop();
      sender.destroy();
      const again = await startTestController({ dataDir });
      try {
        const image = (await imageApi(again.address, again.token).call('getImage', {
          id: 'cut-by-stop',
        })) as Image;
        expect(image.status).toBe(ImageStatus.IMAGE_STATUS_KILLED);
        expect(image.statusReason).toBe('the controller stopped before the capture finished; capture again');
      } finally {
        await again.stop();
      }
    } finally {
      removeDataDir(dataDir);
    }
  });

  it('rejects capture specs and ReceiveImage requests with field violations and the right statuses', async () => {
    const image = await createImage('cap-invalid');
    const both = await refusedCapture({ disk: '/dev/sda', receiver: '10.0.0.1:9000', image: image.id });
    expect(both).toMatchObject({ code: status.INVALID_ARGUMENT });
    expect(both.violations.map((v) => v.field)).toEqual(['spec.capture.receiver']);
    const compress = await refusedCapture({ disk: '/dev/sda', receiver: '10.0.0.1:9000', compress: true });
    expect(compress.violations.map((v) => v.field)).toEqual(['spec.capture.compress']);
    const neither = await refusedCapture({ disk: '/dev/sda' });
    expect(neither.violations.map((v) => v.field)).toEqual(['spec.capture.image']);
    expect(await refusedCapture({ disk: '/dev/sda', image: 'no-such-image' })).toMatchObject({
      code: status.NOT_FOUND,
    });
    expect(await refusedCapture({ disk: '/dev/sda', image: 'cap-raw' })).toMatchObject({
      code: status.FAILED_PRECONDITION,
      reason: 'IMAGE_NOT_UPLOADABLE',
    });
    expect(await images().fail('receiveImage', { id: 'cap-raw' })).toMatchObject({
      code: status.FAILED_PRECONDITION,
      reason: 'IMAGE_NOT_UPLOADABLE',
    });
    const badDigest = await images().fail('receiveImage', { id: image.id, expectedSha256: 'xyz' });
    expect(badDigest.violations.map((v) => v.field)).toEqual(['expected_sha256']);
    const badTtl = await images().fail('receiveImage', {
      id: image.id,
      ttl: { seconds: 8 * 86400, nanos: 0 },
    });
    expect(badTtl.violations.map((v) => v.field)).toEqual(['ttl']);
    expect(await images().fail('receiveImage', { id: '' })).toMatchObject({ code: status.INVALID_ARGUMENT });
    // None of these touched the image.
    expect(((await images().call('getImage', { id: image.id })) as Image).status).toBe(
      ImageStatus.IMAGE_STATUS_QUEUED,
    );
  });
});
