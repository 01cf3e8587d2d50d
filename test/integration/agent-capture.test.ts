import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TaskState } from '../../build/gen/ingot/v1/task.ts';
import { runBmctl } from '../../tools/bmctl/cli.ts';
import {
  type AgentProcess,
  createLoopDevice,
  ensureAgentBinary,
  eventually,
  finishedTask,
  type LoopDevice,
  makeImage,
  readDevice,
  startNodeAgent,
  taskApi,
} from '../support/agent.ts';
import { bmctlAgainst } from '../support/bmctl.ts';
import { removeDataDir, startTestController, type TestController } from '../support/controller.ts';
import { freeTcpPort } from '../support/provisioning-lab.ts';

// The agent's capture task against stock netcat and `bmctl image receive`: byte-exact streams both
// ways, partition-table checks on loop devices partitioned with sfdisk (MBR) and sgdisk (GPT),
// unreadable blocks (the kernel here has no device-mapper, so the block reader's test hook makes
// them), and a disk left unchanged.

const run = promisify(execFile);
const MiB = 1 << 20;
const KiB = 1 << 10;
const NODE_MAC = '52:54:00:a9:00:41';
/** Where the agent's block reader fails with EIO: two ranges of the MBR disk, past its partitions. */
const BAD = [
  { offset: 20 * MiB + 4 * KiB, length: 4 * KiB },
  { offset: 24 * MiB, length: 200 * KiB },
];

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('the agent’s capture task', () => {
  let ctl: TestController;
  let agent: AgentProcess;
  let work: string;
  /** 32 MiB, MBR: a bootable partition at 1–9 MiB and one at 9–17 MiB, random bytes elsewhere. */
  let mbr: LoopDevice;
  /** 16 MiB, GPT: an EFI system partition and a Linux one filling the disk. */
  let gpt: LoopDevice;
  /** 4 MiB of zeros. */
  let blank: LoopDevice;
  const tasks = () => taskApi(ctl.address, ctl.token);

  const bmctl = bmctlAgainst(() => ({ address: ctl.address, dataDir: ctl.dataDir }), {
    cwd: () => work,
  }).run;

  /** `bmctl image receive --listen 127.0.0.1:0`: resolves `address` once it listens. */
  function receive(out: string, ...extra: string[]) {
    let stdout = '';
    let stderr = '';
    let listening: (address: string) => void = () => {};
    const address = new Promise<string>((resolve) => {
      listening = resolve;
    });
    const done = runBmctl(['image', 'receive', '--listen', '127.0.0.1:0', '--out', out, ...extra], {
      env: {},
      stdout: (s) => {
        stdout += s;
      },
      stderr: (s) => {
        stderr += s;
        const m = /listening on (\S+);/.exec(stderr);
        if (m) listening(m[1] as string);
      },
      cwd: work,
    }).then((code) => ({ code, stdout, stderr }));
    void done.then((r) => listening(`exited ${r.code}: ${r.stderr}`));
    return { address, done };
  }

  async function capture(spec: Record<string, unknown>) {
    const task = await tasks().call('createTask', { node: 'capture-node', spec: { capture: spec } });
    return (await finishedTask(ctl.address, ctl.token, task.id)).task;
  }

  async function fill(disk: LoopDevice, seed: number): Promise<void> {
    const handle = await open(disk.path, 'r+');
    try {
      await handle.write(makeImage(disk.sizeBytes, seed), 0, disk.sizeBytes, 0);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  const whole = async (disk: LoopDevice) => readDevice(disk.path, 0, disk.sizeBytes);

  beforeAll(async () => {
    await ensureAgentBinary();
    work = mkdtempSync(join(tmpdir(), 'ingot-capture-'));
    ctl = await startTestController();
    mbr = await createLoopDevice(32 * MiB);
    gpt = await createLoopDevice(16 * MiB);
    blank = await createLoopDevice(4 * MiB);
    await fill(mbr, 41);
    await fill(gpt, 42);
    const sfdisk = spawn('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', mbr.path], {
      stdio: ['pipe', 'ignore', 'inherit'],
    });
    sfdisk.stdin.end(
      'label: dos\nstart=2048, size=16384, type=83, bootable\nstart=18432, size=16384, type=83\n',
    );
    expect(await new Promise((resolve) => sfdisk.once('exit', resolve))).toBe(0);
    // sgdisk refuses to replace the MBR-like first sector makeImage leaves: start from zeros at both ends.
    const handle = await open(gpt.path, 'r+');
    await handle.write(Buffer.alloc(MiB), 0, MiB, 0);
    await handle.write(Buffer.alloc(MiB), 0, MiB, gpt.sizeBytes - MiB);
    await handle.close();
    await run('sgdisk', ['-o', '-n', '1:2048:+4M', '-t', '1:ef00', '-n', '2:0:0', '-t', '2:8300', gpt.path]);
    agent = await startNodeAgent(
      ctl,
      { name: 'capture-node', ip: '10.9.6.1', mac: NODE_MAC, bmcAddress: '10.9.7.1' },
      {
        disks: [mbr.path, gpt.path, blank.path],
        env: { INGOT_AGENT_UNREADABLE_FOR_TESTS: BAD.map((b) => `${b.offset}:${b.length}`).join(',') },
      },
    );
  });

  afterAll(async () => {
    await agent?.stop();
    await ctl?.stop();
    await mbr?.detach();
    await gpt?.detach();
    await blank?.detach();
    if (ctl) removeDataDir(ctl.dataDir);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('streams a GPT disk byte-exact to a stock `nc -l`, reports its digest and the table, and writes nothing', async () => {
    const before = await whole(gpt);
    const port = await freeTcpPort('127.0.0.1');
    const out = join(work, 'nc-gpt.img');
    const fd = openSync(out, 'w');
    const nc = spawn('nc', ['-l', '127.0.0.1', String(port)], { stdio: ['ignore', fd, 'inherit'] });
    closeSync(fd);
    const ncExit = new Promise((resolve) => nc.once('exit', resolve));
    await eventually('nc to listen', async () =>
      (await run('ss', ['-Hltn', `sport = :${port}`])).stdout.includes(`:${port}`) ? true : undefined,
    );
    const task = await capture({ disk: gpt.path, receiver: `127.0.0.1:${port}`, blockSizeBytes: MiB });
    expect(task.error).toBeUndefined();
    expect(task.state).toBe(TaskState.TASK_STATE_SUCCEEDED);
    expect(await ncExit).toBe(0);
    const received = readFileSync(out);
    expect(received.length).toBe(gpt.sizeBytes);
    expect(received.equals(before)).toBe(true);
    expect(task.outcome).toMatchObject({
      sha256: sha256(before),
      bytesSent: gpt.sizeBytes,
      bytesWritten: 0,
      unreadable: [],
      partitionTable: {
        scheme: 'gpt',
        mbrSignature: true,
        gptPrimary: true,
        gptBackup: true,
        partitionCount: 2,
        lastPartitionEndBytes: gpt.sizeBytes - 33 * 512,
        hasBootPartition: true,
        warnings: [],
      },
    });
    expect(sha256(await whole(gpt))).toBe(sha256(before));
  });

  it('`bmctl image receive` takes a stock `dd | nc`, prints size and digest, and checks them', async () => {
    const expected = sha256(await whole(gpt));
    const out = join(work, 'dd-gpt.img');
    const receiver = receive(out, '--size', String(gpt.sizeBytes), '--sha256', expected);
    const [host, port] = (await receiver.address).split(':') as [string, string];
    const dd = spawn('dd', [`if=${gpt.path}`, 'bs=1M', 'status=none'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const nc = spawn('nc', ['-N', host, port], { stdio: [dd.stdout, 'ignore', 'inherit'] });
    expect(await new Promise((resolve) => nc.once('exit', resolve))).toBe(0);
    const result = await receiver.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`received ${gpt.sizeBytes} bytes`);
    expect(result.stdout).toContain(`sha256 ${expected}`);
    expect(sha256(readFileSync(out))).toBe(expected);

    // The same file again: refused without --force.
    const again = await bmctl('image', 'receive', '--listen', '127.0.0.1:0', '--out', out);
    expect(again).toMatchObject({ code: 1 });
    expect(again.stderr).toContain('give --force');

    // A stream shorter than announced fails.
    const short = receive(join(work, 'short.img'), '--size', String(gpt.sizeBytes));
    const [h2, p2] = (await short.address).split(':') as [string, string];
    const head = spawn('dd', [`if=${gpt.path}`, 'bs=1M', 'count=3', 'status=none'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    spawn('nc', ['-N', h2, p2], { stdio: [head.stdout, 'ignore', 'inherit'] });
    const shortResult = await short.done;
    expect(shortResult.code).toBe(1);
    expect(shortResult.stderr).toContain(
      `short stream: received ${3 * MiB} bytes, expected ${gpt.sizeBytes}`,
    );
  });

  it('`bmctl task create capture --to-last-partition --watch` stops after the MBR’s last partition', async () => {
    const out = join(work, 'mbr-head.img');
    const receiver = receive(out);
    const address = await receiver.address;
    const watched = await bmctl(
      'task',
      'create',
      'capture',
      '--node',
      'capture-node',
      '--disk',
      mbr.path,
      '--receiver',
      address,
      '--bs',
      '4M',
      '--to-last-partition',
      '--watch',
    );
    expect(watched.code, watched.stderr).toBe(0);
    // Progress in bytes (a capture this small may be done before the first `capturing` report).
    expect(watched.stdout).toMatch(/(capturing|done) [\d.]+ \S+ \/ 17\.0 MiB/);
    const head = await readDevice(mbr.path, 0, 17 * MiB);
    expect(watched.stdout).toContain(`succeeded: ${17 * MiB} bytes sent, sha256 ${sha256(head)}`);
    const result = await receiver.done;
    expect(result.code, result.stderr).toBe(0);
    expect(readFileSync(out).equals(head)).toBe(true);
    const tasks = JSON.parse((await bmctl('task', 'list', '--node', 'capture-node', '-o', 'json')).stdout);
    const task = tasks.at(-1);
    expect(task.outcome.partitionTable).toMatchObject({
      scheme: 'mbr',
      partitionCount: 2,
      lastPartitionEndBytes: 17 * MiB,
      hasBootPartition: true,
    });
  });

  it('sends zeros for unreadable blocks and reports their offsets; strict captures fail instead', async () => {
    const before = await whole(mbr);
    const out = join(work, 'mbr-bad.img');
    const receiver = receive(out);
    const task = await capture({ disk: mbr.path, receiver: await receiver.address, blockSizeBytes: MiB });
    expect(task.error).toBeUndefined();
    expect((await receiver.done).code).toBe(0);
    // Each failed 1 MiB block is read again in 64 KiB pieces: only the pieces holding bad bytes are zeros.
    const expectedRanges = [
      { offsetBytes: 20 * MiB, lengthBytes: 64 * KiB },
      { offsetBytes: 24 * MiB, lengthBytes: 256 * KiB },
    ];
    expect(
      task.outcome?.unreadable.map(({ offsetBytes, lengthBytes }) => ({ offsetBytes, lengthBytes })),
    ).toEqual(expectedRanges);
    expect(task.outcome?.unreadable[0]?.error).toContain('EIO');
    const expected = Buffer.from(before);
    for (const r of expectedRanges) expected.fill(0, r.offsetBytes, r.offsetBytes + r.lengthBytes);
    const received = readFileSync(out);
    expect(received.equals(expected)).toBe(true);
    expect(task.outcome?.sha256).toBe(sha256(expected));

    const strictReceiver = receive(join(work, 'mbr-strict.img'));
    const strict = await capture({
      disk: mbr.path,
      receiver: await strictReceiver.address,
      blockSizeBytes: MiB,
      strict: true,
    });
    expect(strict.state).toBe(TaskState.TASK_STATE_FAILED);
    expect(strict.error).toMatchObject({
      reason: 'DISK_READ_FAILED',
      metadata: { offset: String(20 * MiB) },
    });
    expect(strict.error?.message).toContain(`cannot be read at bytes ${20 * MiB}`);
    // The receiver got the blocks before the bad one, then a broken stream or an early end.
    await strictReceiver.done;
    expect(sha256(await whole(mbr))).toBe(sha256(before));
  });

  it('warns about a blank disk instead of failing, and refuses --to-last-partition on it', async () => {
    const receiver = receive(join(work, 'blank.img'));
    const task = await capture({ disk: blank.path, receiver: await receiver.address });
    expect(task.state).toBe(TaskState.TASK_STATE_SUCCEEDED);
    expect((await receiver.done).code).toBe(0);
    expect(task.outcome?.partitionTable).toMatchObject({ scheme: 'none', mbrSignature: false });
    expect(task.outcome?.partitionTable?.warnings.join()).toContain('no partition table');

    const refused = await capture({ disk: blank.path, receiver: '127.0.0.1:9', toLastPartition: true });
    expect(refused.error?.reason).toBe('NO_PARTITION_TABLE');
  });

  it('reports an unreachable receiver', async () => {
    const port = await freeTcpPort('127.0.0.1');
    const task = await capture({ disk: blank.path, receiver: `127.0.0.1:${port}` });
    expect(task.error?.reason).toBe('RECEIVER_UNREACHABLE');
    expect(task.error?.message).toContain('bmctl image receive');
  });

  it('rejects bad capture specs with field violations', async () => {
    const bad = await tasks().fail('createTask', {
      node: 'capture-node',
      spec: { capture: { disk: 'sda', blockSizeBytes: 1000, receiver: 'no-port' } },
    });
    expect(bad.code).toBe(3);
    expect(bad.violations.map((v) => v.field).sort()).toEqual([
      'spec.capture.block_size_bytes',
      'spec.capture.disk',
      'spec.capture.receiver',
    ]);
    const noDestination = await tasks().fail('createTask', {
      node: 'capture-node',
      spec: { capture: { disk: '/dev/sda' } },
    });
    expect(noDestination.violations).toEqual([
      { field: 'spec.capture.image', description: expect.stringContaining('or a receiver HOST:PORT') },
    ]);
    const tooBig = await tasks().fail('createTask', {
      node: 'capture-node',
      spec: { capture: { disk: '/dev/sda', receiver: '10.0.0.1:70000', blockSizeBytes: 128 * MiB } },
    });
    expect(tooBig.violations.map((v) => v.field).sort()).toEqual([
      'spec.capture.block_size_bytes',
      'spec.capture.receiver',
    ]);
    const usage = await bmctl('task', 'create', 'capture', '--node', 'capture-node', '--disk', '/dev/sda');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('--receiver');
  });
});
