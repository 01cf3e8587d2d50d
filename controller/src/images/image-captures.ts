import type { Socket } from 'node:net';
import type { EntityManager } from '@mikro-orm/sql';
import type { Caller } from '../api/auth.ts';
import type { TaskQueue } from '../conductor/task-queue.ts';
import { Wakeup } from '../conductor/wakeup.ts';
import type { CaptureSettings } from '../config/config.ts';
import { ImageNotUploadableError } from '../domain/agent-errors.ts';
import { checkCaptureSpec } from '../domain/capture-spec.ts';
import { InvalidArgumentError } from '../domain/errors.ts';
import { type CaptureSpecBody, isFinished } from '../domain/tasks.ts';
import type { Logger } from '../log/logger.ts';
import { type DiskFormat, Image } from '../store/entities/image.ts';
import { Task } from '../store/entities/task.ts';
import type { Database } from '../store/orm.ts';
import { type CapturePort, CapturePorts, NoConnectionError } from './capture-ports.ts';
import { ImageDataError, type ImageStore, type ReceivedImage } from './image-store.ts';
import { findImage } from './images.ts';

/** How long a ReceiveImage port waits for its connection unless asked otherwise. @default 1 h */
export const RECEIVE_TTL_DEFAULT_MS = 3600_000;
/** The longest a ReceiveImage port may wait. @default 7 days */
export const RECEIVE_TTL_MAX_MS = 7 * 24 * 3600_000;
/** After the stream ended, how long the agent has to report the task's result. @default 10 min */
const RESULT_WAIT_MS = 10 * 60_000;
/** After a capture broke, how long its task has to report why before it is cancelled. @default 10 s */
const FAILURE_REPORT_WAIT_MS = 10_000;
/** How long a capture waits for its task to be committed by its creator. @default 60 s */
const TASK_APPEAR_WAIT_MS = 60_000;
/** How often a capture re-reads its task, for results recorded by another controller. @default 2 s */
const TASK_POLL_MS = 2000;

/** Why a capture's image is KILLED; the message becomes its status reason. */
class CaptureFailure extends Error {}

/** What ReceiveImage was told to expect. */
interface Expected {
  expectedSizeBytes?: number;
  expectedSha256?: string;
}

/** Where a capture's bytes are checked: against a task's outcome, or what ReceiveImage expects. */
type Check = { task: Task } | Expected;

/**
 * Captures into the image store: the controller's side of `dd | nc`. Each
 * capture claims a QUEUED or KILLED image (→ SAVING), opens a port of the
 * capture range for one TCP connection and streams it into the store; the
 * image becomes ACTIVE once the bytes check out against the capture task's
 * outcome (or ReceiveImage's expected size and digest), KILLED with the
 * reason otherwise.
 */
export class ImageCaptures {
  readonly #db: Database;
  readonly #store: ImageStore;
  readonly #tasks: TaskQueue;
  readonly #log: Logger;
  readonly #settings: CaptureSettings;
  readonly #ports: CapturePorts;
  /** Captures in progress through this controller, by image id. */
  readonly #running = new Map<string, { abort: AbortController; done: Promise<void> }>();

  constructor(deps: {
    db: Database;
    store: ImageStore;
    tasks: TaskQueue;
    log: Logger;
    settings: CaptureSettings;
  }) {
    this.#db = deps.db;
    this.#store = deps.store;
    this.#tasks = deps.tasks;
    this.#log = deps.log.child({ component: 'captures' });
    this.#settings = deps.settings;
    this.#ports = new CapturePorts(deps.settings);
  }

  /**
   * Creates a capture task for the node. With `spec.image` (an id or name)
   * the image is claimed (SAVING; zstd with `compress`), a capture port is
   * opened and put in `spec.receiver`, and the capture is followed until the
   * image is ACTIVE or KILLED. Without it, just creates the task. Throws
   * InvalidArgumentError (`spec.capture.*`), NotFoundError,
   * ImageNotUploadableError, CapturePortsBusyError.
   */
  async createTask(em: EntityManager, caller: Caller, nodeId: string, spec: CaptureSpecBody): Promise<Task> {
    const body = checkCaptureSpec(spec);
    if (!body.image) return this.#tasks.create(em, { nodeId, kind: 'capture', spec: { capture: body } });
    const image = await findImage(em, caller, body.image, { write: true, field: 'spec.capture.image' });
    const deadline = new Date(Date.now() + this.#settings.connectTimeoutMs);
    const format: DiskFormat = body.compress ? 'zstd' : 'raw';
    const port = await this.#claim(em, image, format, deadline);
    let task: Task;
    try {
      task = await this.#tasks.create(em, {
        nodeId,
        kind: 'capture',
        spec: { capture: { ...body, image: image.id, receiver: port.receiver } },
        imageId: image.id,
      });
    } catch (err) {
      port.close();
      // Inside the caller's transaction its rollback undoes the claim (and a KILL from another
      // connection would wait on the claim's row lock for ever); outside, the claim is committed.
      if (!em.isInTransaction())
        await this.#kill(image.id, 'the capture task could not be created; capture again');
      throw err;
    }
    this.#follow(image, format, port, deadline, { task });
    return task;
  }

  /**
   * ReceiveImage: opens a capture port for the image; the first connection's
   * bytes become it. Throws InvalidArgumentError (`expected_sha256`),
   * NotFoundError, ImageNotUploadableError, CapturePortsBusyError.
   */
  async receive(
    caller: Caller,
    ref: string,
    opts: { expectedSizeBytes?: number; expectedSha256?: string; ttlMs?: number },
  ): Promise<{ receiver: string; expireTime: Date; image: Image }> {
    if (opts.expectedSha256 !== undefined && !/^[0-9a-fA-F]{64}$/.test(opts.expectedSha256)) {
      throw new InvalidArgumentError([{ field: 'expected_sha256', description: 'must be 64 hex digits' }]);
    }
    const em = this.#db.fork();
    const image = await findImage(em, caller, ref, { write: true });
    const expireTime = new Date(Date.now() + (opts.ttlMs ?? RECEIVE_TTL_DEFAULT_MS));
    const port = await this.#claim(em, image, image.diskFormat, expireTime);
    this.#follow(image, image.diskFormat, port, expireTime, {
      ...(opts.expectedSizeBytes ? { expectedSizeBytes: opts.expectedSizeBytes } : {}),
      ...(opts.expectedSha256 ? { expectedSha256: opts.expectedSha256.toLowerCase() } : {}),
    });
    return {
      receiver: port.receiver,
      expireTime,
      image: await this.#db.fork().findOneOrFail(Image, { id: image.id }),
    };
  }

  /**
   * Stops receiving the image's bytes here, if this controller is: the
   * image is being deleted, or its capture starts over. `reason` becomes the
   * image's status reason.
   */
  async abandon(imageId: string, reason: string): Promise<void> {
    const run = this.#running.get(imageId);
    if (!run) return;
    run.abort.abort(new CaptureFailure(reason));
    await run.done;
  }

  /** Whether this controller is receiving (or checking) the image's bytes now. */
  isReceiving(imageId: string): boolean {
    return this.#running.has(imageId);
  }

  /** Closes every port; images still SAVING through this controller become KILLED. */
  async stop(): Promise<void> {
    const runs = [...this.#running.values()];
    for (const run of runs) {
      run.abort.abort(
        new CaptureFailure('the controller stopped before the capture finished; capture again'),
      );
    }
    await Promise.all(runs.map((run) => run.done));
  }

  /** QUEUED or KILLED → SAVING, with a port open for it; the port is closed again if the claim fails. */
  async #claim(em: EntityManager, image: Image, format: DiskFormat, deadline: Date): Promise<CapturePort> {
    if (image.status !== 'queued' && image.status !== 'killed') {
      throw new ImageNotUploadableError(image.name, image.status);
    }
    const port = await this.#ports.open();
    let claimed: number;
    try {
      claimed = await em.nativeUpdate(
        Image,
        { id: image.id, status: { $in: ['queued', 'killed'] } },
        {
          status: 'saving',
          diskFormat: format,
          statusReason: `waiting for the bytes on ${port.receiver} until ${deadline.toISOString()}`,
          updatedAt: new Date(),
        },
      );
    } catch (err) {
      port.close();
      throw err;
    }
    if (claimed === 0) {
      port.close();
      throw new ImageNotUploadableError(image.name, 'saving');
    }
    this.#log.info({ image: image.id, receiver: port.receiver, format }, 'capture port opened');
    return port;
  }

  #follow(image: Image, format: DiskFormat, port: CapturePort, deadline: Date, check: Check): void {
    const abort = new AbortController();
    const done = this.#capture(image, format, port, deadline, check, abort.signal).finally(() => {
      port.close();
      this.#running.delete(image.id);
    });
    this.#running.set(image.id, { abort, done });
  }

  /** Receives, checks and settles one capture; never rejects (failures KILL the image). */
  async #capture(
    image: Image,
    format: DiskFormat,
    port: CapturePort,
    deadline: Date,
    check: Check,
    stopping: AbortSignal,
  ): Promise<void> {
    const log = this.#log.child({ image: image.id, receiver: port.receiver });
    const watching = new AbortController();
    const taskEnded = 'task' in check ? this.#taskEnded(check.task.id, watching.signal) : undefined;
    // A task that fails or is cancelled ends the capture, whether or not its agent connected.
    const taskFailed = new AbortController();
    taskEnded?.then(
      (task) => task.state !== 'succeeded' && taskFailed.abort(new CaptureFailure(taskFailure(task))),
      (err: unknown) => err instanceof CaptureFailure && taskFailed.abort(err),
    );
    const signal = AbortSignal.any([stopping, taskFailed.signal]);
    let socket: Socket | undefined;
    let bytes = 0;
    try {
      socket = await port.accept(deadline, signal);
      const peer = `${socket.remoteAddress}:${socket.remotePort}`;
      log.info({ peer }, 'capture connection accepted');
      const connection = socket;
      signal.addEventListener('abort', () => connection.destroy(), { once: true });
      async function* counted(): AsyncGenerator<Buffer> {
        for await (const chunk of connection as AsyncIterable<Buffer>) {
          bytes += chunk.length;
          yield chunk;
        }
      }
      const received = await this.#store.receive(image.id, format, counted(), {
        signal,
        verify: (r) =>
          'task' in check && taskEnded
            ? this.#matchOutcome(r, taskEnded)
            : matchExpected(r, check as Expected),
      });
      const settled = await this.#db
        .fork()
        .nativeUpdate(
          Image,
          { id: image.id, status: 'saving' },
          { status: 'active', ...received, statusReason: '', updatedAt: new Date() },
        );
      if (settled === 0) {
        // Deleted (or KILLED by someone else) while the bytes came in: nothing may keep them.
        await this.#store.remove(image.id);
        log.warn({ ...received, peer }, 'image gone or no longer SAVING once received: bytes dropped');
        return;
      }
      log.info({ ...received, peer }, 'image captured');
    } catch (err) {
      let reason = signal.aborted
        ? (signal.reason as Error).message
        : this.#reasonOf(err, { port, deadline, bytes, check, peer: socket?.remoteAddress });
      if (taskEnded && !signal.aborted) {
        // An agent that gives up resets the connection just before it reports why: its reason is the better one.
        const task = await within(taskEnded, FAILURE_REPORT_WAIT_MS);
        if (task && task.state !== 'succeeded') reason = taskFailure(task);
        if (!task) await this.#cancelUnfinished(check as { task: Task });
      }
      await this.#kill(image.id, reason);
      log.warn({ err, reason }, 'capture failed');
    } finally {
      socket?.destroy();
      watching.abort();
    }
  }

  /** The task's outcome must count and hash the bytes exactly as they arrived. */
  async #matchOutcome(received: ReceivedImage, taskEnded: Promise<Task>): Promise<void> {
    const task = await within(taskEnded, RESULT_WAIT_MS);
    if (!task) {
      throw new CaptureFailure(
        `the stream ended after ${received.sizeBytes} bytes but the agent reported no result within ${RESULT_WAIT_MS / 60_000} min; capture again`,
      );
    }
    if (task.state !== 'succeeded') throw new CaptureFailure(taskFailure(task));
    const sent = task.outcome?.bytesSent ?? 0;
    if (sent !== received.sizeBytes) {
      throw new CaptureFailure(
        `received ${received.sizeBytes} bytes but the agent sent ${sent} (task ${task.id}): the stream was cut or mixed with another sender's; capture again`,
      );
    }
    if (task.outcome?.sha256 !== received.sha256) {
      throw new CaptureFailure(
        `the bytes received hash to sha256 ${received.sha256}, the agent's to ${task.outcome?.sha256} (task ${task.id}): they changed on the way; capture again`,
      );
    }
  }

  /**
   * Resolves with the task once it is finished (watching the bus, and the database for other
   * controllers). A task not found yet is waited for: its creator's transaction may not have committed.
   * One that never appears (the transaction rolled back) ends the capture.
   */
  async #taskEnded(taskId: string, signal: AbortSignal): Promise<Task> {
    const appearBy = Date.now() + TASK_APPEAR_WAIT_MS;
    const wakeup = new Wakeup();
    const unsubscribe = this.#tasks.bus.watchTask(taskId, (event) => {
      if (event.kind === 'changed') wakeup.wake();
    });
    try {
      for (;;) {
        const task = await this.#db.fork().findOne(Task, { id: taskId });
        if (task && isFinished(task.state)) return task;
        if (!task && Date.now() > appearBy) {
          throw new CaptureFailure(`the capture task ${taskId} was never created; capture again`);
        }
        signal.throwIfAborted();
        await wakeup.pause(TASK_POLL_MS, signal);
      }
    } finally {
      unsubscribe();
    }
  }

  #reasonOf(
    err: unknown,
    at: { port: CapturePort; deadline: Date; bytes: number; check: Check; peer: string | undefined },
  ): string {
    if (err instanceof CaptureFailure || err instanceof ImageDataError) return err.message;
    if (err instanceof NoConnectionError) {
      return 'task' in at.check
        ? `the agent did not connect to ${at.port.receiver} by ${at.deadline.toISOString()} (can the node reach the controller's capture ports?); capture again`
        : `nobody connected to ${at.port.receiver} by ${at.deadline.toISOString()}; open another port (bmctl image receive-port) and send again`;
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code) {
      return `the connection from ${at.peer} broke after ${at.bytes} bytes (${code}); capture again`;
    }
    this.#log.error({ err }, 'capture failed unexpectedly');
    return `the controller failed storing the capture (${(err as Error).message}); capture again`;
  }

  async #kill(imageId: string, reason: string): Promise<void> {
    await this.#db
      .fork()
      .nativeUpdate(
        Image,
        { id: imageId, status: 'saving' },
        { status: 'killed', statusReason: reason, updatedAt: new Date() },
      );
  }

  /** A task whose capture failed on this side has nothing left to do: its agent is told to stop. */
  async #cancelUnfinished(check: { task: Task }): Promise<void> {
    const taskId = check.task.id;
    const em = this.#db.fork();
    const task = await em.findOne(Task, { id: taskId });
    if (!task || isFinished(task.state)) return;
    await this.#tasks.cancel(em, task).catch((err: unknown) => {
      this.#log.warn({ err, task: taskId }, 'could not cancel the capture task');
    });
  }
}

/** `promise`'s value, or undefined when it takes longer than `ms` (or rejects). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise.catch(() => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}

function taskFailure(task: Task): string {
  if (task.state === 'cancelled') return `the capture task ${task.id} was cancelled; capture again`;
  const error = task.error ? `${task.error.reason}: ${task.error.message}` : 'no error given';
  return `the capture task ${task.id} ${task.state}: ${error}`;
}

/** ReceiveImage's expectations, when given. */
async function matchExpected(received: ReceivedImage, expected: Expected): Promise<void> {
  if (expected.expectedSizeBytes !== undefined && received.sizeBytes !== expected.expectedSizeBytes) {
    throw new CaptureFailure(
      `received ${received.sizeBytes} bytes, expected ${expected.expectedSizeBytes}: the stream was cut short or is another disk; open another port (bmctl image receive-port) and send again`,
    );
  }
  if (expected.expectedSha256 !== undefined && received.sha256 !== expected.expectedSha256) {
    throw new CaptureFailure(
      `the bytes received hash to sha256 ${received.sha256}, not the expected ${expected.expectedSha256}; open another port (bmctl image receive-port) and send again`,
    );
  }
}
