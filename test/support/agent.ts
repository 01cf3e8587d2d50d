/**
 * The agent executable, loop devices and the image, task and agent APIs for
 * integration tests. Everything started here is stopped by PID or detached
 * by name, never by pattern.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as agentPb from '../../build/gen/ingot/v1/agent.ts';
import * as imagePb from '../../build/gen/ingot/v1/image.ts';
import * as taskPb from '../../build/gen/ingot/v1/task.ts';
import { decodeError, InventoryApi, ServiceApi } from './controller.ts';
import { REPO_ROOT } from './process.ts';

const run = promisify(execFile);

/** The executable `make agent` builds. */
export const AGENT_BINARY = join(REPO_ROOT, 'build/ingot-agent');
/** Safety net for waits; tests never rely on it for timing. @default 120 s */
const SAFETY_NET_MS = 120_000;

/**
 * Builds the agent if it is missing or older than its sources (`make agent` is incremental).
 * Test files run in parallel: a lock keeps two builds from racing on the same output.
 */
export async function ensureAgentBinary(): Promise<string> {
  await run(
    'flock',
    [
      join(REPO_ROOT, 'build/.agent-build.lock'),
      'make',
      '--no-print-directory',
      '-o',
      'build/descriptors.binpb',
      'agent',
    ],
    {
      cwd: REPO_ROOT,
      timeout: 600_000,
      maxBuffer: 16 << 20,
    },
  );
  if (!existsSync(AGENT_BINARY)) throw new Error(`make agent did not produce ${AGENT_BINARY}`);
  return AGENT_BINARY;
}

export const imageApi = (address: string, token?: string) =>
  new ServiceApi(imagePb.ImageServiceService, imagePb, address, token);
export const taskApi = (address: string, token?: string) =>
  new ServiceApi(taskPb.TaskServiceService, taskPb, address, token);
export const agentApi = (address: string, token?: string) =>
  new ServiceApi(agentPb.AgentServiceService, agentPb, address, token);

function metadata(token: string | undefined): grpc.Metadata {
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return md;
}

/** UploadImage: the header, then `data` in `chunkBytes` pieces. Rejects with a CallError. */
export function uploadImage(
  address: string,
  token: string,
  header: Partial<imagePb.UploadHeader>,
  data: Buffer,
  chunkBytes = 1 << 20,
): Promise<imagePb.Image> {
  const client = new imagePb.ImageServiceClient(address, grpc.credentials.createInsecure());
  return new Promise<imagePb.Image>((resolve, reject) => {
    const call = client.uploadImage(metadata(token), (err, image) => {
      client.close();
      if (err) reject(decodeError(err));
      else resolve(image as imagePb.Image);
    });
    // The controller may refuse the upload before every chunk is written: those writes fail, the callback says why.
    call.on('error', () => {});
    call.write({ header: imagePb.UploadHeader.fromPartial(header) });
    for (let at = 0; at < data.length; at += chunkBytes)
      call.write({ data: data.subarray(at, at + chunkBytes) });
    call.end();
  });
}

/** A WatchTask stream: every event until the task finishes (or `cancel()`). */
export function watchTask(
  address: string,
  token: string,
  id: string,
): {
  events: AsyncIterable<taskPb.TaskEvent>;
  cancel(): void;
} {
  const client = new taskPb.TaskServiceClient(address, grpc.credentials.createInsecure());
  const call = client.watchTask({ id }, metadata(token));
  return {
    events: (async function* () {
      try {
        for await (const event of call) yield event as taskPb.TaskEvent;
      } catch (err) {
        if ((err as grpc.ServiceError).code !== grpc.status.CANCELLED)
          throw decodeError(err as grpc.ServiceError);
      } finally {
        client.close();
      }
    })(),
    cancel: () => call.cancel(),
  };
}

/** Watches a task until it finishes; returns the final task and every progress report seen. */
export async function finishedTask(
  address: string,
  token: string,
  id: string,
): Promise<{ task: taskPb.Task; progress: taskPb.TaskProgress[] }> {
  const progress: taskPb.TaskProgress[] = [];
  let task: taskPb.Task | undefined;
  for await (const event of watchTask(address, token, id).events) {
    if (event.progress) progress.push(event.progress);
    if (event.task) task = event.task;
  }
  if (!task) throw new Error(`WatchTask ${id} ended without the task`);
  return { task, progress };
}

/** Polls `check` (every 50 ms) until it returns a value; throws after the safety net. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
): Promise<T> {
  const deadline = Date.now() + SAFETY_NET_MS;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Registers a node (its BMC is never called) and starts a real agent for it with an agent token of its
 * own; resolves once the agent is connected.
 */
export async function startNodeAgent(
  ctl: { address: string; token: string },
  node: { name: string; ip: string; mac: string; bmcAddress: string },
  opts: Omit<AgentOptions, 'controller' | 'token' | 'macs'>,
): Promise<AgentProcess> {
  await new InventoryApi(ctl.address, ctl.token).call('createNode', {
    node: { ...node, cpus: 1, ramMb: 512, diskGb: 1, bmcUsername: 'a' },
  });
  const { token } = await agentApi(ctl.address, ctl.token).call('createAgentToken', { node: node.name });
  const agent = AgentProcess.start({ ...opts, controller: ctl.address, token, macs: [node.mac] });
  await agent.waitFor('connected', (l) => l.msg === 'connected to the controller');
  return agent;
}

/** One JSON log line of the agent. */
export interface AgentLogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

export interface AgentOptions {
  controller: string;
  token: string;
  /** Devices tasks may write (`--disk-allow`). */
  disks?: string[];
  /** MACs the agent reports (`--mac`). */
  macs?: string[];
  args?: string[];
  /** Pass the token as `--token` (as the example does) instead of INGOT_AGENT_TOKEN. */
  tokenFlag?: boolean;
  /** Extra environment, e.g. the block reader's test hook. */
  env?: Record<string, string>;
  /**
   * Run the agent inside this network namespace (`ip netns exec NS`, which execs the agent, so the
   * PID and the signals stay the agent's). @default the test's own namespace
   */
  netns?: string;
}

/** The real agent executable, run as a child of the test. */
export class AgentProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly lines: AgentLogLine[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #stderr = '';

  private constructor(child: ChildProcess) {
    if (child.pid === undefined) throw new Error('the agent did not start');
    this.child = child;
    this.pid = child.pid;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      this.#stderr += text;
      const parts = this.#stderr.split('\n');
      this.#stderr = parts.pop() ?? '';
      for (const line of parts) {
        try {
          this.lines.push(JSON.parse(line) as AgentLogLine);
        } catch {
          this.lines.push({ level: 'raw', msg: line });
        }
      }
    });
    child.stdout?.resume();
  }

  static start(opts: AgentOptions): AgentProcess {
    const args = ['--controller', opts.controller, '--reconnect-max-ms', '500'];
    if (opts.tokenFlag) args.push('--token', opts.token);
    for (const disk of opts.disks ?? []) args.push('--disk-allow', disk);
    for (const mac of opts.macs ?? []) args.push('--mac', mac);
    args.push(...(opts.args ?? []));
    const env = {
      ...process.env,
      ...opts.env,
      ...(opts.tokenFlag ? {} : { INGOT_AGENT_TOKEN: opts.token }),
    };
    const [bin, argv] = opts.netns
      ? ['ip', ['netns', 'exec', opts.netns, AGENT_BINARY, ...args]]
      : [AGENT_BINARY, args];
    return new AgentProcess(spawn(bin, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  /** Waits for a log line matching `predicate`; rejects if the agent exits first. */
  async waitFor(what: string, predicate: (line: AgentLogLine) => boolean): Promise<AgentLogLine> {
    let exited = false;
    void this.exited.then(() => {
      exited = true;
    });
    return eventually(`agent log: ${what}`, () => {
      const line = this.lines.find(predicate);
      if (line) return line;
      if (exited) throw new Error(`the agent exited before logging ${what}:\n${this.output()}`);
      return undefined;
    });
  }

  output(): string {
    return this.lines.map((l) => JSON.stringify(l)).join('\n');
  }

  /** Sends `signal` and waits for the exit (SIGKILL after 10 s). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** A loop device on a sparse file in its own temp dir. */
export interface LoopDevice {
  path: string;
  sizeBytes: number;
  /** Detaches the device (only this one) and removes its file. */
  detach(): Promise<void>;
}

/**
 * `directIo` makes the loop device write its backing file with O_DIRECT, and `written` writes the
 * whole backing file first (no block allocation on a first write), so that the device behaves like
 * a disk — writes reach storage and a flush only flushes — rather than like the page cache or a
 * sparse file.
 */
export async function createLoopDevice(
  sizeBytes: number,
  opts: { directIo?: boolean; written?: boolean } = {},
): Promise<LoopDevice> {
  const dir = mkdtempSync(join(tmpdir(), 'ingot-loop-'));
  const file = join(dir, 'disk.img');
  writeFileSync(file, '');
  if (opts.written) {
    const blocks = Math.ceil(sizeBytes / (8 << 20));
    await run('dd', [
      'if=/dev/zero',
      `of=${file}`,
      'bs=8M',
      `count=${blocks}`,
      'oflag=direct',
      'status=none',
    ]);
  }
  await run('truncate', ['-s', String(sizeBytes), file]);
  let path: string;
  try {
    const args = ['--find', '--show', ...(opts.directIo ? ['--direct-io=on'] : []), file];
    path = (await run('losetup', args)).stdout.trim();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    path,
    sizeBytes,
    async detach() {
      await run('losetup', ['-d', path]).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Reads `length` bytes of a device from `offset`, as the disk holds them. */
export async function readDevice(path: string, offset: number, length: number): Promise<Buffer> {
  const { open } = await import('node:fs/promises');
  // The agent writes with O_DIRECT: drop whatever this machine's page cache still holds of the device.
  await run('blockdev', ['--flushbufs', path]);
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await handle.read(buffer, done, length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return buffer.subarray(0, done);
  } finally {
    await handle.close();
  }
}

/**
 * A deterministic pseudo-random disk image with an MBR-like signature in
 * its first sector, so a test can tell whether a partition table is there.
 */
export function makeImage(sizeBytes: number, seed = 1): Buffer {
  const image = Buffer.alloc(sizeBytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < sizeBytes; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    image.writeUInt32LE(x >>> 0, i);
  }
  // Compressible runs, as real disks have.
  image.fill(0, sizeBytes / 2, sizeBytes / 2 + sizeBytes / 8);
  image[510] = 0x55;
  image[511] = 0xaa;
  return image;
}

/**
 * The agent's side of Connect, driven by a test: what a (possibly misbehaving) agent sends, and
 * everything the controller answers, for protocol tests that need no executable.
 */
export class FakeAgentStream {
  readonly received: agentPb.ConnectResponse[] = [];
  /** Resolves with the stream's end: OK, or the error the controller ended it with. */
  readonly ended: Promise<{ code: grpc.status; error?: ReturnType<typeof decodeError> }>;
  readonly #client: agentPb.AgentServiceClient;
  readonly #call: grpc.ClientDuplexStream<agentPb.ConnectRequest, agentPb.ConnectResponse>;

  constructor(address: string) {
    this.#client = new agentPb.AgentServiceClient(address, grpc.credentials.createInsecure());
    this.#call = this.#client.connect();
    this.#call.on('data', (message: agentPb.ConnectResponse) => this.received.push(message));
    this.ended = new Promise((resolve) => {
      this.#call.on('error', (err: grpc.ServiceError) =>
        resolve({ code: err.code, error: decodeError(err) }),
      );
      this.#call.on('end', () => resolve({ code: grpc.status.OK }));
    });
  }

  /** Sends Hello with these fields (the token and MACs at least). */
  hello(hello: Partial<agentPb.Hello>): void {
    this.send({ hello: agentPb.Hello.fromPartial(hello) });
  }

  send(message: agentPb.ConnectRequest): void {
    this.#call.write(message);
  }

  /** Waits for the first message from the controller (after `after` of them) that `pick` returns a value for. */
  async next<T>(what: string, pick: (m: agentPb.ConnectResponse) => T | undefined, after = 0): Promise<T> {
    return eventually(what, async () => {
      for (const message of this.received.slice(after)) {
        const value = pick(message);
        if (value !== undefined) return value;
      }
      const ended = await Promise.race([this.ended, Promise.resolve(undefined)]);
      if (ended) throw new Error(`the stream ended (${JSON.stringify(ended)}) before ${what}`);
      return undefined;
    });
  }

  /** Half-closes, as an agent that stops cleanly does. */
  end(): void {
    this.#call.end();
  }

  /** Drops the stream, as a killed agent or a broken network does. */
  close(): void {
    this.#call.cancel();
    this.#client.close();
  }
}

/**
 * Follows a task's WatchTask stream in the background, keeping the most bytes a `writing` report
 * showed (live reports, or the one inside the first snapshot when the watch started late).
 */
export function followWrites(
  address: string,
  token: string,
  id: string,
): { written(): number; stop(): void } {
  const watch = watchTask(address, token, id);
  let written = 0;
  void (async () => {
    for await (const event of watch.events) {
      const progress = event.progress ?? event.task?.progress;
      if (progress?.phase === 'writing') written = Math.max(written, progress.bytesDone);
    }
  })().catch(() => {});
  return { written: () => written, stop: () => watch.cancel() };
}
