/**
 * `make bench-capture`: Ingot's capture into the image store against the
 * seed's `dd | nc`, on the same 2 GiB loop disk (a GPT partition table and
 * data), in one run:
 *
 *   ingot:  a capture task: agent → controller capture port → image store (ACTIVE)
 *   dd|nc:  dd if=DEV bs=8M | nc -N 127.0.0.1 PORT   into   nc -l 127.0.0.1 PORT > FILE
 *
 * Ingot's time runs from CreateTask until the image is ACTIVE, so it
 * includes queuing, the agent's and the controller's SHA-256, the fsync of
 * the stored file and the check against the agent's count and digest; the
 * baseline's ends when `nc -l` exits (no digest, no fsync). Both files are
 * on the same file system. Each round runs both, the order alternating, and
 * the medians are compared. Then a disk that is 90% empty (data only in its
 * first partition, ~10% of it) is captured whole, with
 * `--to-last-partition`, compressed, and both.
 *
 * Needs root (loop devices). Progress on stderr; stdout ends with one line.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Image, ImageStatus } from '../../build/gen/ingot/v1/image.ts';
import { TaskState } from '../../build/gen/ingot/v1/task.ts';
import {
  type AgentProcess,
  createLoopDevice,
  ensureAgentBinary,
  eventually,
  finishedTask,
  imageApi,
  type LoopDevice,
  startNodeAgent,
  taskApi,
} from '../../test/support/agent.ts';
import { freeTcpPort } from '../../test/support/provisioning-lab.ts';
import { type ControllerProcess, startControllerProcess } from '../scheduler/controller-process.ts';
import { Latencies } from '../scheduler/stats.ts';

const run = promisify(execFile);
const GiB = 2 ** 30;
const MiB = 2 ** 20;
/** @default 2 GiB */
const DISK_BYTES = Number(process.env.BENCH_DISK_BYTES ?? 2 * GiB);
/** Rounds of (dd|nc, Ingot) on the full disk, alternating who goes first. @default 3 */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const NODE_MAC = '52:54:00:be:00:08';

const say = (text: string) => process.stderr.write(`bench-capture: ${text}\n`);

const rate = (bytes: number, seconds: number) => {
  const perSecond = bytes / seconds;
  return perSecond >= 1e9 ? `${(perSecond / 1e9).toFixed(2)} GB/s` : `${(perSecond / 1e6).toFixed(0)} MB/s`;
};

/**
 * Writes disk-like data into `[from, to)` of a device, 1 MiB at a time: half random (compressed data,
 * binaries), a quarter repeated text (logs, configs), a quarter zeros (free space).
 */
async function fillDevice(path: string, from: number, to: number): Promise<void> {
  const text = Buffer.alloc(MiB, 'Nov 25 09:12:01 node-7 systemd[1]: Started Session 42 of user root.\n');
  const zeros = Buffer.alloc(MiB);
  const handle = await open(path, 'r+');
  try {
    for (let at = from, block = 0; at < to; at += MiB, block++) {
      const kind = block % 4;
      const chunk = kind < 2 ? randomBytes(MiB) : kind === 2 ? text : zeros;
      await handle.write(chunk, 0, Math.min(MiB, to - at), at);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Drops what the page cache holds of the device, so that every capture reads the disk. */
async function coldCache(disk: LoopDevice): Promise<void> {
  await run('sync');
  await run('blockdev', ['--flushbufs', disk.path]);
}

/** Set on SIGTERM/SIGINT: the run stops at the next step and cleans up. */
const stopping = new AbortController();
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    say(`${signal}: stopping`);
    stopping.abort(new Error(`stopped by ${signal}`));
  });
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root for loop devices');
  const dir = mkdtempSync(join(tmpdir(), 'ingot-bench-capture-'));
  const disks: LoopDevice[] = [];
  let agent: AgentProcess | undefined;
  let controller: ControllerProcess | undefined;
  try {
    say('building the agent (make agent)');
    await ensureAgentBinary();
    say(`preparing two ${DISK_BYTES / GiB} GiB loop disks (GPT; one full of data, one 90% empty)`);
    // Loop devices that read their backing files with O_DIRECT, written once (no holes): reads hit storage.
    const full = await createLoopDevice(DISK_BYTES, { directIo: true, written: true });
    disks.push(full);
    const sparse = await createLoopDevice(DISK_BYTES, { directIo: true, written: true });
    disks.push(sparse);
    await fillDevice(full.path, MiB, DISK_BYTES - MiB);
    await run('sgdisk', ['-o', '-n', '1:2048:0', '-t', '1:8300', full.path]);
    const dataBytes = Math.round(DISK_BYTES / 10 / MiB) * MiB;
    await fillDevice(sparse.path, MiB, MiB + dataBytes);
    await run('sgdisk', ['-o', '-n', `1:2048:+${dataBytes / MiB}M`, '-t', '1:8300', sparse.path]);

    controller = await startControllerProcess('', join(dir, 'data'));
    const { grpcAddress: grpc, token } = controller;
    agent = await startNodeAgent(
      { address: grpc, token },
      { name: 'bench-node', ip: '10.99.0.8', mac: NODE_MAC, bmcAddress: '10.99.1.8' },
      { disks: disks.map((d) => d.path) },
    );
    const images = imageApi(grpc, token);
    let captures = 0;

    /** One capture into the store: seconds from CreateTask to ACTIVE, and the image. */
    const ingot = async (disk: LoopDevice, opts: { compress?: boolean; toLastPartition?: boolean } = {}) => {
      await coldCache(disk);
      const name = `bench-${++captures}`;
      await images.call('createImage', { image: { name } });
      const started = performance.now();
      const created = await taskApi(grpc, token).call('createTask', {
        node: 'bench-node',
        spec: { capture: { disk: disk.path, image: name, ...opts } },
      });
      const { task } = await finishedTask(grpc, token, created.id);
      if (task.state !== TaskState.TASK_STATE_SUCCEEDED) {
        throw new Error(`the capture failed: ${task.error?.reason} ${task.error?.message}`);
      }
      const image = await eventually(`image ${name} to be checked`, async () => {
        const now = (await images.call('getImage', { id: name })) as Image;
        return now.status === ImageStatus.IMAGE_STATUS_SAVING ? undefined : now;
      });
      const seconds = (performance.now() - started) / 1000;
      const at = (d: Date | undefined) => d?.getTime() ?? 0;
      say(
        `  ingot: queued ${((at(task.startTime) - at(task.createTime)) / 1000).toFixed(2)} s, agent ${((at(task.endTime) - at(task.startTime)) / 1000).toFixed(2)} s, ` +
          `then ACTIVE after ${((at(image.updateTime) - at(task.endTime)) / 1000).toFixed(2)} s (the controller's fsync and check)`,
      );
      if (image.status !== ImageStatus.IMAGE_STATUS_ACTIVE)
        throw new Error(`image ${name}: ${image.statusReason}`);
      await images.call('deleteImage', { id: name });
      return { seconds, image, bytesRead: task.outcome?.bytesRead ?? 0 };
    };

    /** `dd if=DEV bs=8M | nc -N` into `nc -l > FILE`: seconds until the receiver exits. */
    const baseline = async (disk: LoopDevice): Promise<number> => {
      await coldCache(disk);
      const port = await freeTcpPort('127.0.0.1');
      const out = join(dir, 'nc.img');
      const fd = openSync(out, 'w');
      const receiver = spawn('nc', ['-l', '127.0.0.1', String(port)], { stdio: ['ignore', fd, 'inherit'] });
      closeSync(fd);
      const received = new Promise<number | null>((resolve) => receiver.once('exit', resolve));
      try {
        await eventually(
          'nc -l to listen',
          async () =>
            (await run('ss', ['-Hltn', `sport = :${port}`])).stdout.includes(`:${port}`) || undefined,
        );
        const started = performance.now();
        await run('bash', [
          '-o',
          'pipefail',
          '-c',
          `dd if=${disk.path} bs=8M status=none | nc -N 127.0.0.1 ${port}`,
        ]);
        const code = await received;
        const seconds = (performance.now() - started) / 1000;
        if (code !== 0 || statSync(out).size !== disk.sizeBytes) {
          throw new Error(`nc -l exited ${code} with ${statSync(out).size} bytes`);
        }
        return seconds;
      } finally {
        receiver.kill();
        rmSync(out, { force: true });
      }
    };

    const ingotMs = new Latencies();
    const ddMs = new Latencies();
    for (let round = 1; round <= ROUNDS; round++) {
      stopping.signal.throwIfAborted();
      // Alternate who goes first, so that a change in the machine's load does not favour one side.
      let b = 0;
      let i = 0;
      if (round % 2 === 1) {
        b = await baseline(full);
        i = (await ingot(full)).seconds;
      } else {
        i = (await ingot(full)).seconds;
        b = await baseline(full);
      }
      ddMs.add(b * 1000);
      ingotMs.add(i * 1000);
      say(`round ${round}: dd|nc ${b.toFixed(2)} s, ingot ${i.toFixed(2)} s`);
    }

    stopping.signal.throwIfAborted();
    say(`90%-empty disk: ${dataBytes / MiB} MiB of data in its only partition`);
    const emptyDd = await baseline(sparse);
    const emptyRaw = await ingot(sparse);
    const emptyTail = await ingot(sparse, { toLastPartition: true });
    const emptyZstd = await ingot(sparse, { compress: true });
    const emptyBoth = await ingot(sparse, { compress: true, toLastPartition: true });
    const mib = (bytes: number) => `${(bytes / MiB).toFixed(0)} MiB`;
    for (const [label, r] of [
      ['raw', emptyRaw],
      ['--to-last-partition', emptyTail],
      ['zstd', emptyZstd],
      ['zstd --to-last-partition', emptyBoth],
    ] as const) {
      say(
        `  ${label}: ${r.seconds.toFixed(2)} s, ${mib(r.bytesRead)} read, ${mib(r.image.sizeBytes)} stored`,
      );
    }
    say(`  dd|nc: ${emptyDd.toFixed(2)} s`);

    const i = ingotMs.percentile(50) / 1000;
    const b = ddMs.percentile(50) / 1000;
    process.stdout.write(
      `ratio ${(b / i).toFixed(2)} ingot ${rate(DISK_BYTES, i)} dd|nc ${rate(DISK_BYTES, b)} | ` +
        `${DISK_BYTES / GiB} GiB disk: ingot ${i.toFixed(2)} s vs dd|nc ${b.toFixed(2)} s (medians of ${ROUNDS}) | ` +
        `90%-empty: dd|nc ${emptyDd.toFixed(2)} s, ingot raw ${emptyRaw.seconds.toFixed(2)} s, ` +
        `--to-last-partition ${emptyTail.seconds.toFixed(2)} s (${mib(emptyTail.image.sizeBytes)}), ` +
        `zstd ${emptyZstd.seconds.toFixed(2)} s (${mib(emptyZstd.image.sizeBytes)} stored), ` +
        `both ${emptyBoth.seconds.toFixed(2)} s (${mib(emptyBoth.image.sizeBytes)} stored)\n`,
    );
  } finally {
    await agent?.stop();
    await controller?.stop();
    for (const disk of disks) await disk.detach();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    say(`failed: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
