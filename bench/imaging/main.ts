/**
 * `make bench-imaging`: Ingot's deploy against the baseline everyone uses,
 * on the same image and the same loop device, in one run:
 *
 *   raw:  ingot-agent deploy          vs  curl -s URL | dd of=DEV bs=8M iflag=fullblock oflag=direct
 *   zstd: ingot-agent deploy          vs  curl -s URL | zstd -dc | dd of=DEV bs=8M iflag=fullblock oflag=direct
 *
 * Ingot's time runs from CreateTask to the final state on a WatchTask
 * stream, so it includes queuing, the SHA-256, progress and the final
 * sync. Also measured: the agent's peak RSS, and the latency from an
 * agent's progress report to a WatchTask client. Each round runs both, the
 * order alternating from round to round, and the medians are compared.
 *
 * Needs root (loop devices). Progress on stderr; stdout ends with one line.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DiskFormat } from '../../build/gen/ingot/v1/image.ts';
import { TaskState } from '../../build/gen/ingot/v1/task.ts';
import {
  AgentProcess,
  agentApi,
  createLoopDevice,
  ensureAgentBinary,
  eventually,
  imageApi,
  type LoopDevice,
  taskApi,
  watchTask,
} from '../../test/support/agent.ts';
import { InventoryApi } from '../../test/support/controller.ts';
import { CONTROLLER_MAIN } from '../../test/support/process.ts';

const run = promisify(execFile);
const GiB = 2 ** 30;
const MiB = 2 ** 20;
/** @default 2 GiB */
const IMAGE_BYTES = Number(process.env.BENCH_IMAGE_BYTES ?? 2 * GiB);
/** Rounds of (baseline, Ingot) per format, alternating who goes first. @default 5 */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const NODE_MAC = '52:54:00:be:00:01';

const say = (text: string) => process.stderr.write(`bench-imaging: ${text}\n`);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

/**
 * A disk-like image: 1 MiB blocks, half random (compressed data, binaries), a quarter repeated text
 * (logs, configs), a quarter zeros (free space). zstd -3 shrinks it to a bit over half.
 */
async function writeImage(path: string, bytes: number): Promise<void> {
  const out = createWriteStream(path, { highWaterMark: 8 * MiB });
  const text = Buffer.alloc(MiB, 'Nov 25 09:12:01 node-7 systemd[1]: Started Session 42 of user root.\n');
  const zeros = Buffer.alloc(MiB);
  for (let block = 0; block * MiB < bytes; block++) {
    const kind = block % 4;
    const chunk = kind < 2 ? randomBytes(MiB) : kind === 2 ? text : zeros;
    if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  await new Promise<void>((resolve, reject) =>
    out.end((err?: Error | null) => (err ? reject(err) : resolve())),
  );
}

/** The controller as its own process, as in production; resolves with its addresses once it serves. */
async function startController(dataDir: string) {
  const child = spawn(
    process.execPath,
    [CONTROLLER_MAIN, '--data-dir', dataDir, '--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0'],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, INGOT_LOG_LEVEL: 'info' } },
  );
  let buffered = '';
  const serving = await new Promise<{ grpc: string; http: string }>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the controller exited (${code}) before serving`)));
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (text: string) => {
      buffered += text;
      for (const line of buffered.split('\n')) {
        if (line.includes('"controller serving"'))
          resolve(JSON.parse(line) as { grpc: string; http: string });
      }
      buffered = buffered.slice(buffered.lastIndexOf('\n') + 1);
    });
  });
  child.stdout?.resume();
  return { child, ...serving, token: readFileSync(join(dataDir, 'admin.token'), 'utf8').trim() };
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Peak resident memory of a process while `work` runs, sampled every 50 ms, in bytes. */
async function peakRss<T>(
  pid: number,
  work: () => Promise<T>,
): Promise<{ result: T; peakBytes: number; anonBytes: number }> {
  let peak = 0;
  let anon = 0;
  const sample = () => {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      if (kb * 1024 > peak) {
        peak = kb * 1024;
        anon = Number(/RssAnon:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
      }
    } catch {
      // The process is gone; the work will say why.
    }
  };
  const timer = setInterval(sample, 50);
  try {
    const result = await work();
    sample();
    return { result, peakBytes: peak, anonBytes: anon };
  } finally {
    clearInterval(timer);
  }
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
  const dir = mkdtempSync(join(tmpdir(), 'ingot-bench-imaging-'));
  let disk: LoopDevice | undefined;
  let agent: AgentProcess | undefined;
  let controller: Awaited<ReturnType<typeof startController>> | undefined;
  try {
    say('building the agent (make agent)');
    await ensureAgentBinary();
    const rawPath = join(dir, 'image.raw');
    const zstdPath = join(dir, 'image.raw.zst');
    say(`writing a ${IMAGE_BYTES / GiB} GiB image and its zstd copy`);
    await writeImage(rawPath, IMAGE_BYTES);
    await run('zstd', ['-q', '-3', '-T0', '-f', rawPath, '-o', zstdPath]);
    // A loop device that behaves like a disk: it writes through to storage (with a buffered backing
    // file, `oflag=direct` only copies into the page cache and leaves the data unflushed) and its
    // backing file is written once first (no block allocation on first writes, so a flush flushes a
    // cache, not file-system metadata).
    say('preparing the loop device');
    disk = await createLoopDevice(IMAGE_BYTES + 64 * MiB, { directIo: true, written: true });

    controller = await startController(join(dir, 'data'));
    const { grpc, http, token } = controller;
    const images = imageApi(grpc, token);
    const upload = async (name: string, file: string, diskFormat: DiskFormat) => {
      const image = await images.call('createImage', { image: { name, diskFormat } });
      await run('curl', [
        '-sSf',
        '-T',
        file,
        '-H',
        `authorization: Bearer ${token}`,
        `http://${http}/v1/images/${image.id}/file`,
      ]);
      return images.call('getImage', { id: image.id });
    };
    say('uploading both images (HTTP PUT)');
    const raw = await upload('bench-raw', rawPath, DiskFormat.DISK_FORMAT_RAW);
    const zstd = await upload('bench-zstd', zstdPath, DiskFormat.DISK_FORMAT_RAW_ZSTD);
    say(
      `zstd image: ${(zstd.sizeBytes / MiB).toFixed(0)} MiB for ${(zstd.virtualSizeBytes / MiB).toFixed(0)} MiB`,
    );

    await new InventoryApi(grpc, token).call('createNode', {
      node: {
        name: 'bench-node',
        ip: '10.99.0.1',
        mac: NODE_MAC,
        cpus: 2,
        ramMb: 1024,
        diskGb: 3,
        bmcAddress: '10.99.1.1',
        bmcUsername: 'admin',
      },
    });
    const agentToken = (await agentApi(grpc, token).call('createAgentToken', { node: 'bench-node' })).token;
    agent = AgentProcess.start({ controller: grpc, token: agentToken, disks: [disk.path], macs: [NODE_MAC] });
    await eventually('the agent to connect', async () => {
      const { agents } = await agentApi(grpc, token).call('listAgents', {});
      return agents.length > 0 || undefined;
    });
    const agentPid = agent.pid;
    const diskPath = disk.path;

    const latenciesMs: number[] = [];
    let peakRssBytes = 0;
    const ingot = async (imageId: string): Promise<number> => {
      await run('sync');
      const started = performance.now();
      const task = await taskApi(grpc, token).call('createTask', {
        node: 'bench-node',
        spec: { deploy: { image: imageId, disk: diskPath } },
      });
      const cpuBefore = cpuSeconds(agentPid);
      const { result, peakBytes, anonBytes } = await peakRss(agentPid, async () => {
        let final = task;
        for await (const event of watchTask(grpc, token, task.id).events) {
          if (event.progress?.time) latenciesMs.push(Date.now() - event.progress.time.getTime());
          if (event.task) final = event.task;
        }
        return final;
      });
      const seconds = (performance.now() - started) / 1000;
      const logged = (msg: string) =>
        Date.parse(String(agent?.lines.find((l) => l.task === task.id && l.msg === msg)?.time ?? ''));
      say(
        `  agent: ${((logged('task succeeded') - logged('task started')) / 1000).toFixed(2)} s from assignment to result, ` +
          `${(cpuSeconds(agentPid) - cpuBefore).toFixed(2)} CPU s, RSS peak ${(peakBytes / MiB).toFixed(0)} MiB ` +
          `(${(anonBytes / MiB).toFixed(0)} MiB anonymous)`,
      );
      peakRssBytes = Math.max(peakRssBytes, peakBytes);
      if (result.state !== TaskState.TASK_STATE_SUCCEEDED) {
        throw new Error(`the deploy failed: ${result.error?.reason} ${result.error?.message}`);
      }
      return seconds;
    };
    const baseline = async (imageId: string, decompress: boolean): Promise<number> => {
      const { url } = await images.call('createImageUrl', { id: imageId, ttl: { seconds: 3600, nanos: 0 } });
      const dd = `dd of=${diskPath} bs=8M iflag=fullblock oflag=direct status=none`;
      const pipe = decompress ? `curl -s '${url}' | zstd -dc | ${dd}` : `curl -s '${url}' | ${dd}`;
      await run('sync');
      const started = performance.now();
      await run('bash', ['-o', 'pipefail', '-c', pipe], { maxBuffer: MiB });
      return (performance.now() - started) / 1000;
    };

    const results: Record<'raw' | 'zstd', { ingot: number[]; baseline: number[] }> = {
      raw: { ingot: [], baseline: [] },
      zstd: { ingot: [], baseline: [] },
    };
    for (let round = 1; round <= ROUNDS; round++) {
      stopping.signal.throwIfAborted();
      for (const [format, image] of [
        ['raw', raw],
        ['zstd', zstd],
      ] as const) {
        // Alternate who goes first, so that a change in the machine's load does not favour one side.
        let b = 0;
        let i = 0;
        if (round % 2 === 1) {
          b = await baseline(image.id, format === 'zstd');
          i = await ingot(image.id);
        } else {
          i = await ingot(image.id);
          b = await baseline(image.id, format === 'zstd');
        }
        results[format].baseline.push(b);
        results[format].ingot.push(i);
        say(`round ${round} ${format}: baseline ${b.toFixed(2)} s, ingot ${i.toFixed(2)} s`);
      }
    }
    const hwm =
      Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${agentPid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
    const gbps = (seconds: number) => (IMAGE_BYTES / seconds / 1e9).toFixed(2);
    const line = (format: 'raw' | 'zstd') => {
      const i = median(results[format].ingot);
      const b = median(results[format].baseline);
      return { ratio: (i / b).toFixed(2), i, b };
    };
    const r = line('raw');
    const z = line('zstd');
    say(
      `agent peak RSS while deploying ${(peakRssBytes / MiB).toFixed(0)} MiB (VmHWM over its life ${(hwm / MiB).toFixed(0)} MiB)`,
    );
    say(`progress → WatchTask: ${latenciesMs.length} reports`);
    const p50 = percentile(latenciesMs, 50).toFixed(0);
    const p99 = percentile(latenciesMs, 99).toFixed(0);
    process.stdout.write(
      `raw ingot/baseline ${r.ratio}, zstd ingot/baseline ${z.ratio} | ` +
        `${IMAGE_BYTES / GiB} GiB raw: ingot ${r.i.toFixed(2)} s (${gbps(r.i)} GB/s) vs curl|dd ${r.b.toFixed(2)} s (${gbps(r.b)} GB/s); ` +
        `zstd: ingot ${z.i.toFixed(2)} s vs curl|zstd|dd ${z.b.toFixed(2)} s | ` +
        `agent RSS peak ${(Math.max(peakRssBytes, hwm) / MiB).toFixed(0)} MiB | ` +
        `progress→WatchTask p50 ${p50} ms p99 ${p99} ms (n=${latenciesMs.length})\n`,
    );
  } finally {
    await agent?.stop();
    const child = controller?.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await disk?.detach();
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
