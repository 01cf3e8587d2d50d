import type { ConnectRequest, TaskAssignment, TaskResult } from '../../../build/gen/ingot/v1/agent.ts';
import type { TaskError } from '../../../build/gen/ingot/v1/task.ts';
import type { DiskPolicy } from '../disk/block-device.ts';
import type { Logger } from '../log.ts';
import { capture } from './capture.ts';
import type { TaskContext, TaskOutcomeValue } from './context.ts';
import { deploy } from './deploy.ts';
import { inspect } from './inspect.ts';
import { ProgressReporter } from './progress.ts';
import { type PowerAction, power } from './reboot.ts';
import { Reason, TaskFailure } from './task-failure.ts';
import { wipe } from './wipe.ts';

/** How long a reboot or power off waits for the controller to acknowledge the outcome. @default 10 s */
const ACK_WAIT_MS = 10_000;

export interface TaskRunnerOptions {
  disks: DiskPolicy;
  power: { reboot: PowerAction; poweroff: PowerAction };
  log: Logger;
}

/**
 * The agent's tasks, across reconnects: a task id runs at most once at a
 * time (an assignment for a running task only re-attaches it), results wait
 * in an outbox until the controller acknowledges them, and progress goes to
 * whichever stream is connected.
 */
export class TaskRunner {
  readonly #opts: TaskRunnerOptions;
  readonly #running = new Map<string, { abort: AbortController; progress: ProgressReporter }>();
  readonly #outbox = new Map<string, TaskResult>();
  readonly #afterAck = new Map<string, () => Promise<void>>();
  #send: ((message: ConnectRequest) => void) | undefined;

  constructor(opts: TaskRunnerOptions) {
    this.#opts = opts;
  }

  runningIds(): string[] {
    return [...this.#running.keys()];
  }

  pendingResults(): TaskResult[] {
    return [...this.#outbox.values()];
  }

  /** A stream is up: progress and results go to it from now on. */
  attach(send: (message: ConnectRequest) => void): void {
    this.#send = send;
    for (const result of this.#outbox.values()) send({ result });
    for (const { progress } of this.#running.values()) {
      if (progress.latest) send({ progress: { ...progress.latest, time: new Date() } });
    }
  }

  detach(): void {
    this.#send = undefined;
  }

  start(assignment: TaskAssignment): void {
    const { taskId } = assignment;
    const log = this.#opts.log.child({ task: taskId, attempt: assignment.attempt });
    if (this.#running.has(taskId)) {
      log.info('task already running; carrying on with it');
      return;
    }
    const done = this.#outbox.get(taskId);
    if (done) {
      log.info('task already finished; sending its result again');
      this.#send?.({ result: done });
      return;
    }
    const abort = new AbortController();
    const progress = new ProgressReporter(taskId, (p) => this.#send?.({ progress: p }));
    this.#running.set(taskId, { abort, progress });
    const ctx: TaskContext = { taskId, signal: abort.signal, log, progress, disks: this.#opts.disks };
    log.info({ kind: assignment.kind }, 'task started');
    this.#execute(assignment, ctx).then(
      (outcome) => {
        if (outcome.afterAck) this.#afterAck.set(taskId, outcome.afterAck);
        this.#finish(taskId, {
          taskId,
          outcome: {
            sha256: outcome.sha256 ?? '',
            bytesWritten: outcome.bytesWritten ?? 0,
            inventory: outcome.inventory,
            bytesSent: outcome.bytesSent ?? 0,
            bytesRead: outcome.bytesRead ?? 0,
            unreadable: outcome.unreadable ?? [],
            partitionTable: outcome.partitionTable,
          },
          error: undefined,
        });
        log.info('task succeeded');
        if (outcome.afterAck) {
          // Act even if the acknowledgement never comes: the controller may be gone for good.
          setTimeout(() => this.acked(taskId), ACK_WAIT_MS).unref();
        }
      },
      (err: unknown) => {
        const error = toTaskError(err, abort.signal);
        if (error.reason === Reason.AGENT_ERROR) log.error({ err }, 'task failed unexpectedly');
        else log.warn({ reason: error.reason, message: error.message }, 'task failed');
        this.#finish(taskId, { taskId, outcome: undefined, error });
      },
    );
  }

  cancel(taskId: string): void {
    const running = this.#running.get(taskId);
    if (!running) return;
    this.#opts.log.info({ task: taskId }, 'task cancelled by the controller');
    running.abort.abort(new TaskFailure(Reason.CANCELLED, 'cancelled by the controller'));
  }

  /** The controller recorded the result: forget it, then do what had to wait for that (reboot). */
  acked(taskId: string): void {
    this.#outbox.delete(taskId);
    const after = this.#afterAck.get(taskId);
    this.#afterAck.delete(taskId);
    after?.().catch((err: unknown) => this.#opts.log.error({ err, task: taskId }, 'post-task action failed'));
  }

  /** Resolves once no task is running. */
  async settled(): Promise<void> {
    while (this.#running.size > 0) await new Promise((resolve) => setTimeout(resolve, 50));
  }

  /** Stops every task (the agent is shutting down). */
  abortAll(): void {
    for (const { abort } of this.#running.values()) {
      abort.abort(new TaskFailure(Reason.CANCELLED, 'the agent is shutting down'));
    }
  }

  #finish(taskId: string, result: TaskResult): void {
    const running = this.#running.get(taskId);
    running?.progress.close();
    this.#running.delete(taskId);
    this.#outbox.set(taskId, result);
    this.#send?.({ result });
  }

  async #execute(a: TaskAssignment, ctx: TaskContext): Promise<TaskOutcomeValue> {
    if (a.deploy) return deploy(a.deploy, ctx);
    if (a.wipe) return wipe(a.wipe, ctx);
    if (a.inspect) return inspect(ctx);
    if (a.reboot) return power('reboot', this.#opts.power.reboot, ctx);
    if (a.poweroff) return power('poweroff', this.#opts.power.poweroff, ctx);
    if (a.capture) return capture(a.capture, ctx);
    throw new TaskFailure(
      Reason.UNSUPPORTED_TASK,
      `this agent does not know task kind ${a.kind}; upgrade it`,
    );
  }
}

function toTaskError(err: unknown, signal: AbortSignal): TaskError {
  if (signal.aborted) {
    const reason = signal.reason instanceof TaskFailure ? signal.reason : undefined;
    return { reason: Reason.CANCELLED, message: reason?.message ?? 'cancelled', metadata: {} };
  }
  if (err instanceof TaskFailure) return { reason: err.reason, message: err.message, metadata: err.metadata };
  return {
    reason: Reason.AGENT_ERROR,
    message: `the agent failed unexpectedly: ${(err as Error)?.message ?? String(err)}`,
    metadata: {},
  };
}
