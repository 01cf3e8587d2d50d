/**
 * `make bench-capture`: Ingot's capture into the image store against the
 * seed's `dd | nc`, on the same 2 GiB loop disk (a GPT partition table and
 * data), in one run:
 *
 *   ingot:  a capture task: agent → controller capture port → image store (ACTIVE)
 *   dd|nc:  dd if=DEV bs=8M | nc -N HOST PORT   into   nc -l HOST PORT > FILE
 *
 * Ingot's time runs from CreateTask until the image is ACTIVE, so it
 * includes queuing, the agent's and the controller's SHA-256, the fsync of
 * the stored file and the check against the agent's count and digest; the
 * baseline's ends when `nc -l` exits (no digest, no fsync). Both files are
 * on the same file system. Each round runs every side, the order rotating,
 * and the medians are compared. Two places for the sender:
 *
 *   loopback:     agent and dd|nc in the host's namespace: the virtual disk and the CPU are the limit;
 *   1 Gbit/s link: agent and dd|nc in a node namespace whose veth sends through a 1 Gbit/s token
 *                 bucket (link.ts), receivers in the host's: the bytes on the wire are the limit, as
 *                 from a real node to its controller — raw and `--compress` against dd|nc.
 *
 * Then a disk that is 90% empty (data only in its first partition, ~10% of
 * it) is captured whole, with `--to-last-partition`, compressed, and both,
 * and over the link with both.
 *
 * Needs root (loop devices, the namespace). Progress on stderr; stdout ends with one line.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
import { createShapedLink, type ShapedLink } from './link.ts';

const run = promisify(execFile);
const GiB = 2 ** 30;
const MiB = 2 ** 20;
/** @default 2 GiB */
const DISK_BYTES = Number(process.env.BENCH_DISK_BYTES ?? 2 * GiB);
/** Rounds of (dd|nc, Ingot) on the full disk, alternating who goes first. @default 3 */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** The last octet is the node's index. */
const NODE_MAC = '52:54:00:be:00:0';
/** The link from the node namespace to the host's: its rate as `tc` reads it, and its name in the output. */
const LINK = { rate: '1gbit', label: '1 Gbit/s link' } as const;

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

/** Where a capture is sent from: the host's namespace (loopback) or the node namespace of a link. */
interface Sender {
  label: string;
  /** The node registered for this sender's agent. */
  node: string;
  /** Network namespace the senders run in; none for the host's own. */
  ns?: string;
  /** Where the receivers (the controller's capture port, `nc -l`) listen. */
  host: string;
}

type CaptureOptions = { compress?: boolean; toLastPartition?: boolean };

/** One timed side of a comparison: seconds. */
type Side = () => Promise<number>;

/** Runs every side once per round, rotating who goes first so that a change in the machine's load favours none; medians in seconds. */
async function medians<K extends string>(label: string, sides: Record<K, Side>): Promise<Record<K, number>> {
  const names = Object.keys(sides) as K[];
  const samples = new Map(names.map((name) => [name, new Latencies()]));
  for (let round = 0; round < ROUNDS; round++) {
    stopping.signal.throwIfAborted();
    const order = [...names.slice(round % names.length), ...names.slice(0, round % names.length)];
    const took: string[] = [];
    for (const name of order) {
      const seconds = await sides[name]();
      samples.get(name)?.add(seconds * 1000);
      took.push(`${name} ${seconds.toFixed(2)} s`);
    }
    say(`${label} round ${round + 1}: ${took.join(', ')}`);
  }
  return Object.fromEntries(
    names.map((name) => [name, (samples.get(name)?.percentile(50) ?? Number.NaN) / 1000]),
  ) as Record<K, number>;
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(0)} MiB`;
/** `0.47×`: how many times faster than the baseline. */
const times = (baseline: number, seconds: number) => `${(baseline / seconds).toFixed(2)}×`;

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root for loop devices and network namespaces');
  const dir = mkdtempSync(join(tmpdir(), 'ingot-bench-capture-'));
  const disks: LoopDevice[] = [];
  const agents: AgentProcess[] = [];
  let link: ShapedLink | undefined;
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

    say(`a node namespace behind a ${LINK.label} (veth + tbf)`);
    link = await createShapedLink(LINK.rate);
    const { hostAddress } = link;
    // One controller for both senders, its gRPC and capture ports on the link's host end: the link's
    // agent reaches them over the veth, the host's own agent through lo (a local address is routed there).
    const config = join(dir, 'controller.json');
    writeFileSync(
      config,
      JSON.stringify({ capture: { listenHost: hostAddress, advertiseHost: hostAddress } }),
    );
    controller = await startControllerProcess('', join(dir, 'data'), {
      controllerArgs: ['--config', config, '--grpc-listen', `${hostAddress}:0`],
    });
    const { grpcAddress: grpc, token } = controller;
    const loopback: Sender = { label: 'loopback', node: 'bench-node', host: '127.0.0.1' };
    const linked: Sender = { label: LINK.label, node: 'bench-link', ns: link.ns, host: hostAddress };
    for (const [sender, index] of [
      [loopback, 8],
      [linked, 9],
    ] as const) {
      const node = {
        name: sender.node,
        ip: `10.99.0.${index}`,
        mac: `${NODE_MAC}${index}`,
        bmcAddress: `10.99.1.${index}`,
      };
      agents.push(
        await startNodeAgent({ address: grpc, token }, node, {
          disks: disks.map((d) => d.path),
          ...(sender.ns ? { netns: sender.ns } : {}),
        }),
      );
    }
    const images = imageApi(grpc, token);
    let captures = 0;

    /** One capture into the store from `sender`'s agent: seconds from CreateTask to ACTIVE, and the image. */
    const ingot = async (sender: Sender, disk: LoopDevice, opts: CaptureOptions = {}) => {
      await coldCache(disk);
      const name = `bench-${++captures}`;
      await images.call('createImage', { image: { name } });
      const started = performance.now();
      const created = await taskApi(grpc, token).call('createTask', {
        node: sender.node,
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
        `  ingot (${sender.label}): queued ${((at(task.startTime) - at(task.createTime)) / 1000).toFixed(2)} s, agent ${((at(task.endTime) - at(task.startTime)) / 1000).toFixed(2)} s, ` +
          `then ACTIVE after ${((at(image.updateTime) - at(task.endTime)) / 1000).toFixed(2)} s (the controller's fsync and check)`,
      );
      if (image.status !== ImageStatus.IMAGE_STATUS_ACTIVE)
        throw new Error(`image ${name}: ${image.statusReason}`);
      await images.call('deleteImage', { id: name });
      return { seconds, image, bytesRead: task.outcome?.bytesRead ?? 0 };
    };

    /** `dd if=DEV bs=8M | nc -N` from `sender` into `nc -l > FILE`: seconds until the receiver exits. */
    const baseline = async (sender: Sender, disk: LoopDevice): Promise<number> => {
      await coldCache(disk);
      const port = await freeTcpPort(sender.host);
      const out = join(dir, 'nc.img');
      const fd = openSync(out, 'w');
      const receiver = spawn('nc', ['-l', sender.host, String(port)], { stdio: ['ignore', fd, 'inherit'] });
      closeSync(fd);
      const received = new Promise<number | null>((resolve) => receiver.once('exit', resolve));
      try {
        await eventually(
          'nc -l to listen',
          async () =>
            (await run('ss', ['-Hltn', `sport = :${port}`])).stdout.includes(`:${port}`) || undefined,
        );
        const started = performance.now();
        const pipeline = [
          'bash',
          '-o',
          'pipefail',
          '-c',
          `dd if=${disk.path} bs=8M status=none | nc -N ${sender.host} ${port}`,
        ];
        const [bin, ...args] = sender.ns ? ['ip', 'netns', 'exec', sender.ns, ...pipeline] : pipeline;
        await run(bin as string, args);
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

    const fullLocal = await medians('loopback', {
      'dd|nc': () => baseline(loopback, full),
      ingot: async () => (await ingot(loopback, full)).seconds,
    });

    stopping.signal.throwIfAborted();
    say(`90%-empty disk: ${dataBytes / MiB} MiB of data in its only partition`);
    const emptyDd = await baseline(loopback, sparse);
    const emptyRaw = await ingot(loopback, sparse);
    const emptyTail = await ingot(loopback, sparse, { toLastPartition: true });
    const emptyZstd = await ingot(loopback, sparse, { compress: true });
    const emptyBoth = await ingot(loopback, sparse, { compress: true, toLastPartition: true });
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

    // The compressed size of the full disk is what crosses the link; kept from the last such capture.
    let zstdBytes = 0;
    const fullLink = await medians(LINK.label, {
      'dd|nc': () => baseline(linked, full),
      raw: async () => (await ingot(linked, full)).seconds,
      zstd: async () => {
        const r = await ingot(linked, full, { compress: true });
        zstdBytes = r.image.sizeBytes;
        return r.seconds;
      },
    });
    stopping.signal.throwIfAborted();
    const emptyLinkDd = await baseline(linked, sparse);
    const emptyLinkBoth = await ingot(linked, sparse, { compress: true, toLastPartition: true });
    say(
      `  90%-empty over the link: dd|nc ${emptyLinkDd.toFixed(2)} s, zstd --to-last-partition ${emptyLinkBoth.seconds.toFixed(2)} s`,
    );

    const { 'dd|nc': b, ingot: i } = fullLocal;
    const l = fullLink;
    process.stdout.write(
      `ratio ${(l['dd|nc'] / l.zstd).toFixed(2)} (dd|nc / ingot --compress over a ${LINK.label}) | ` +
        `${LINK.label}, ${DISK_BYTES / GiB} GiB disk (medians of ${ROUNDS}): dd|nc ${l['dd|nc'].toFixed(2)} s, ` +
        `ingot raw ${l.raw.toFixed(2)} s (${times(l['dd|nc'], l.raw)}), --compress ${l.zstd.toFixed(2)} s (${times(l['dd|nc'], l.zstd)}, ${mib(zstdBytes)} sent); ` +
        `90%-empty: dd|nc ${emptyLinkDd.toFixed(2)} s, --compress --to-last-partition ${emptyLinkBoth.seconds.toFixed(2)} s (${times(emptyLinkDd, emptyLinkBoth.seconds)}) | ` +
        `loopback: ratio ${(b / i).toFixed(2)} ingot ${rate(DISK_BYTES, i)} dd|nc ${rate(DISK_BYTES, b)} | ` +
        `${DISK_BYTES / GiB} GiB disk: ingot ${i.toFixed(2)} s vs dd|nc ${b.toFixed(2)} s (medians of ${ROUNDS}) | ` +
        `90%-empty: dd|nc ${emptyDd.toFixed(2)} s, ingot raw ${emptyRaw.seconds.toFixed(2)} s, ` +
        `--to-last-partition ${emptyTail.seconds.toFixed(2)} s (${mib(emptyTail.image.sizeBytes)}), ` +
        `zstd ${emptyZstd.seconds.toFixed(2)} s (${mib(emptyZstd.image.sizeBytes)} stored), ` +
        `both ${emptyBoth.seconds.toFixed(2)} s (${mib(emptyBoth.image.sizeBytes)} stored)\n`,
    );
  } finally {
    for (const agent of agents) await agent.stop();
    await controller?.stop();
    await link?.destroy();
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
