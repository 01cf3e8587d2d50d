import type { EntityManager } from '@mikro-orm/sql';
import type { TaskAssignment } from '../../../build/gen/ingot/v1/agent.ts';
import { TaskKind as PbTaskKind } from '../../../build/gen/ingot/v1/task.ts';
import { TaskFinishedError } from '../domain/agent-errors.ts';
import {
  isFinished,
  type TaskErrorBody,
  TaskErrorReason,
  type TaskKind,
  type TaskOutcomeBody,
  type TaskProgressBody,
  type TaskSpecBody,
  type TaskState,
} from '../domain/tasks.ts';
import { imageFilePath } from '../http/image-routes.ts';
import type { UrlSigner } from '../images/url-signer.ts';
import type { Logger } from '../log/logger.ts';
import { AgentSession, NodeHardware } from '../store/entities/agent.ts';
import { Image } from '../store/entities/image.ts';
import { Task, TaskEvent } from '../store/entities/task.ts';
import { newId } from '../store/ids.ts';
import type { Database } from '../store/orm.ts';
import type { TaskBus } from './task-bus.ts';

/** How long an image URL sent to an agent stays valid; resumed downloads reuse it. @default 6 h */
export const DEPLOY_URL_TTL_MS = 6 * 3600_000;
/** At most one progress sample per task per this interval is stored (all are forwarded live). @default 1 s */
export const PROGRESS_RECORD_INTERVAL_MS = 1000;

const KIND_TO_PB: Record<TaskKind, PbTaskKind> = {
  deploy: PbTaskKind.TASK_KIND_DEPLOY,
  wipe: PbTaskKind.TASK_KIND_WIPE,
  inspect: PbTaskKind.TASK_KIND_INSPECT,
  reboot: PbTaskKind.TASK_KIND_REBOOT,
  poweroff: PbTaskKind.TASK_KIND_POWEROFF,
  capture: PbTaskKind.TASK_KIND_CAPTURE,
};

/** What the controller tells an agent after looking at the node's tasks. */
export type Directive = { assign: TaskAssignment } | { cancel: string };

/** What an agent reported at the end of a task. */
export interface ReportedResult {
  taskId: string;
  outcome?: TaskOutcomeBody;
  error?: TaskErrorBody;
}

/**
 * The tasks of every node, in the database: queuing, sending to agents,
 * progress and results. Every state change is a conditional update on the
 * state it leaves, recorded as an event and announced on the bus.
 */
export class TaskQueue {
  readonly #db: Database;
  readonly #bus: TaskBus;
  readonly #signer: UrlSigner;
  readonly #log: Logger;
  /** Per task: when a progress sample was last stored, its phase, and the write chain keeping samples in order. */
  readonly #recorded = new Map<
    string,
    { at: number; phase: string; chain: Promise<void>; pending?: TaskProgressBody; timer?: NodeJS.Timeout }
  >();

  constructor(deps: { db: Database; bus: TaskBus; signer: UrlSigner; log: Logger }) {
    this.#db = deps.db;
    this.#bus = deps.bus;
    this.#signer = deps.signer;
    this.#log = deps.log.child({ component: 'tasks' });
  }

  get bus(): TaskBus {
    return this.#bus;
  }

  /** Queues a task; the node's agent session hears of it at once. */
  async create(
    em: EntityManager,
    input: { nodeId: string; kind: TaskKind; spec: TaskSpecBody; imageId?: string },
  ): Promise<Task> {
    const task = em.create(Task, {
      nodeId: input.nodeId,
      kind: input.kind,
      spec: input.spec,
      imageId: input.imageId ?? null,
      state: 'queued',
      attempt: 0,
      cancelRequested: false,
      progress: null,
      outcome: null,
      error: null,
      startedAt: null,
      endedAt: null,
    });
    em.create(TaskEvent, { taskId: task.id, time: new Date(), state: 'queued', progress: null, error: null });
    await em.flush();
    this.#log.info({ task: task.id, node: input.nodeId, kind: input.kind }, 'task created');
    this.#bus.nodeChanged(input.nodeId);
    return task;
  }

  /**
   * Cancels a task: at once when queued or when no agent holds the node;
   * otherwise marks it and lets the agent session tell the agent, which
   * confirms with a CANCELLED result.
   */
  async cancel(em: EntityManager, task: Task): Promise<Task> {
    if (isFinished(task.state)) throw new TaskFinishedError(task.id, task.state);
    const error: TaskErrorBody = {
      reason: TaskErrorReason.CANCELLED,
      message: 'cancelled by an operator',
      metadata: {},
    };
    if (task.state === 'queued' && (await this.#transition(em, task, 'queued', 'cancelled', { error }))) {
      return this.#reload(task.id);
    }
    const connected = await em.count(AgentSession, { nodeId: task.nodeId, expiresAt: { $gt: new Date() } });
    if (connected === 0) {
      await this.#transition(em, task, 'running', 'cancelled', {
        error: { ...error, message: 'cancelled by an operator while no agent was connected' },
      });
    } else {
      await em.nativeUpdate(
        Task,
        { id: task.id, state: 'running' },
        { cancelRequested: true, updatedAt: new Date() },
      );
      this.#bus.nodeChanged(task.nodeId);
    }
    const now = await this.#reload(task.id);
    if (now.cancelRequested && !isFinished(now.state))
      this.#bus.publish(now.id, { kind: 'changed', task: now });
    return now;
  }

  /**
   * What a connected agent must be told now. `active` holds the tasks the
   * agent runs (from its Hello, plus those sent on this stream); it is
   * updated here. Running tasks the agent does not have are sent again
   * (a restarted agent), cancel requests are passed on, and when nothing
   * runs the oldest queued task is started.
   */
  async dispatch(
    nodeId: string,
    agent: { active: Set<string>; cancelsSent: Set<string>; httpBase: string },
  ): Promise<Directive[]> {
    const em = this.#db.fork();
    const directives: Directive[] = [];
    const running = await em.find(Task, { nodeId, state: 'running' }, { orderBy: { createdAt: 'asc' } });
    const runningIds = new Set(running.map((t) => t.id));
    for (const id of agent.active) {
      if (!runningIds.has(id) && !agent.cancelsSent.has(id)) {
        // The agent runs something the controller no longer wants (cancelled while it was away).
        directives.push({ cancel: id });
        agent.cancelsSent.add(id);
      }
    }
    let busy = false;
    for (const task of running) {
      if (task.cancelRequested) {
        if (agent.active.has(task.id)) {
          busy = true;
          if (!agent.cancelsSent.has(task.id)) {
            directives.push({ cancel: task.id });
            agent.cancelsSent.add(task.id);
          }
        } else {
          await this.#transition(em, task, 'running', 'cancelled', {
            error: { reason: TaskErrorReason.CANCELLED, message: 'cancelled by an operator', metadata: {} },
          });
        }
        continue;
      }
      busy = true;
      if (agent.active.has(task.id)) continue;
      // Sent before, but this agent does not have it: it restarted. Send it again.
      const resent = await em.nativeUpdate(
        Task,
        { id: task.id, state: 'running', attempt: task.attempt },
        { attempt: task.attempt + 1, updatedAt: new Date() },
      );
      if (resent === 0) continue;
      task.attempt += 1;
      await this.#event(em, task.id, { state: 'running', message: `sent again (attempt ${task.attempt})` });
      const assignment = await this.#assignment(em, task, agent.httpBase);
      if (assignment) {
        directives.push({ assign: assignment });
        agent.active.add(task.id);
        this.#log.info({ task: task.id, node: nodeId, attempt: task.attempt }, 'task sent again');
      }
    }
    while (!busy) {
      const next = await em.findOne(Task, { nodeId, state: 'queued' }, { orderBy: { createdAt: 'asc' } });
      if (!next) break;
      const started = await em.nativeUpdate(
        Task,
        { id: next.id, state: 'queued' },
        { state: 'running', attempt: 1, startedAt: new Date(), updatedAt: new Date() },
      );
      if (started === 0) continue;
      const task = await this.#reload(next.id);
      await this.#event(em, task.id, { state: 'running' });
      this.#bus.publish(task.id, { kind: 'changed', task });
      const assignment = await this.#assignment(em, task, agent.httpBase);
      if (!assignment) continue;
      directives.push({ assign: assignment });
      agent.active.add(task.id);
      busy = true;
      this.#log.info({ task: task.id, node: nodeId, kind: task.kind }, 'task sent');
    }
    return directives;
  }

  /**
   * A progress report: to watchers at once, to the database at most once a
   * second (and on each new phase). A report skipped by that limit is stored
   * at the end of the second, so the last one before a pause (a stalled
   * download) is what a watcher that joins later sees.
   */
  progress(taskId: string, progress: TaskProgressBody): void {
    this.#bus.publish(taskId, { kind: 'progress', progress });
    const now = Date.now();
    const last = this.#recorded.get(taskId);
    if (last && last.phase === progress.phase && now - last.at < PROGRESS_RECORD_INTERVAL_MS) {
      last.pending = progress;
      last.timer ??= setTimeout(
        () => {
          last.timer = undefined;
          const pending = last.pending;
          last.pending = undefined;
          if (pending && this.#recorded.get(taskId) === last) this.#record(taskId, pending, Date.now());
        },
        PROGRESS_RECORD_INTERVAL_MS - (now - last.at),
      );
      last.timer.unref();
      return;
    }
    this.#record(taskId, progress, now);
  }

  #record(taskId: string, progress: TaskProgressBody, now: number): void {
    const last = this.#recorded.get(taskId);
    if (last?.timer) clearTimeout(last.timer);
    const chain = (last?.chain ?? Promise.resolve()).then(async () => {
      const em = this.#db.fork();
      await em.nativeUpdate(Task, { id: taskId, state: 'running' }, { progress, updatedAt: new Date() });
      await this.#event(em, taskId, { progress });
    });
    chain.catch((err: unknown) => this.#log.warn({ err, task: taskId }, 'could not record progress'));
    this.#recorded.set(taskId, { at: now, phase: progress.phase, chain: chain.catch(() => {}) });
  }

  /**
   * Records an agent's result. A deploy's digest is checked against the
   * image's. Results for tasks that are no longer running (a cancel raced
   * the result) are ignored; the agent is acknowledged either way.
   */
  async finish(nodeId: string, result: ReportedResult): Promise<void> {
    const recorded = this.#recorded.get(result.taskId);
    if (recorded?.timer) clearTimeout(recorded.timer);
    await recorded?.chain;
    this.#recorded.delete(result.taskId);
    const em = this.#db.fork();
    const task = await em.findOne(Task, { id: result.taskId, nodeId });
    if (task?.state !== 'running') {
      this.#log.info({ task: result.taskId, node: nodeId }, 'result for a task that is not running; ignored');
      return;
    }
    if (result.outcome) {
      const expected = task.spec.deploy?.sha256;
      if (task.kind === 'deploy' && expected && result.outcome.sha256 !== expected) {
        await this.#transition(em, task, 'running', 'failed', {
          error: {
            reason: TaskErrorReason.DIGEST_MISMATCH,
            message: `the agent wrote an image hashing to ${result.outcome.sha256}, not ${expected}; deploy again`,
            metadata: { expected, actual: result.outcome.sha256 },
          },
        });
        return;
      }
      if (result.outcome.inventory) await this.saveHardware(em, nodeId, result.outcome.inventory, '');
      await this.#transition(em, task, 'running', 'succeeded', { outcome: result.outcome });
    } else {
      const error = result.error ?? {
        reason: 'AGENT_ERROR',
        message: 'the agent gave no outcome',
        metadata: {},
      };
      await this.#transition(
        em,
        task,
        'running',
        error.reason === TaskErrorReason.CANCELLED ? 'cancelled' : 'failed',
        {
          error,
        },
      );
    }
    this.#bus.nodeChanged(nodeId);
  }

  /** Keeps the hardware an agent reported, for operators and for the disk-size check of deploys. */
  async saveHardware(
    em: EntityManager,
    nodeId: string,
    inventory: TaskOutcomeBody['inventory'],
    agentVersion: string,
  ): Promise<void> {
    if (!inventory) return;
    await em.execute(
      `insert into node_hardware (node_id, inventory, agent_version, updated_at) values (?, ?::jsonb, ?, ?)
       on conflict (node_id) do update set inventory = excluded.inventory, updated_at = excluded.updated_at,
         agent_version = case when excluded.agent_version = '' then node_hardware.agent_version
                              else excluded.agent_version end`,
      [nodeId, JSON.stringify(inventory), agentVersion, new Date()],
    );
  }

  async hardwareOf(em: EntityManager, nodeId: string): Promise<NodeHardware | null> {
    return em.findOne(NodeHardware, { nodeId });
  }

  async #assignment(em: EntityManager, task: Task, httpBase: string): Promise<TaskAssignment | undefined> {
    const base = { taskId: task.id, attempt: task.attempt, kind: KIND_TO_PB[task.kind] };
    const { spec } = task;
    if (spec.deploy) {
      const image = await em.findOne(Image, { id: spec.deploy.image });
      if (image?.status !== 'active') {
        await this.#transition(em, task, 'running', 'failed', {
          error: {
            reason: TaskErrorReason.IMAGE_UNAVAILABLE,
            message: `image ${spec.deploy.image} is ${image ? image.status : 'gone'}; upload it again and create a new task`,
            metadata: { image: spec.deploy.image },
          },
        });
        return undefined;
      }
      const signature = this.#signer.sign(image.id, new Date(Date.now() + DEPLOY_URL_TTL_MS));
      return {
        ...base,
        deploy: {
          url: `${httpBase}${imageFilePath(image.id)}?expires=${signature.expires}&sig=${signature.sig}`,
          format: image.diskFormat,
          sizeBytes: image.sizeBytes,
          virtualSizeBytes: image.virtualSizeBytes,
          sha256: image.sha256,
          disk: spec.deploy.disk,
        },
      };
    }
    if (spec.wipe) return { ...base, wipe: spec.wipe };
    if (spec.reboot) return { ...base, reboot: {} };
    if (spec.poweroff) return { ...base, poweroff: {} };
    if (spec.capture) return { ...base, capture: { ...spec.capture } };
    return { ...base, inspect: {} };
  }

  /** One state change: conditional on `from`, recorded, announced. False when the task had moved on. */
  async #transition(
    em: EntityManager,
    task: Task,
    from: TaskState,
    to: TaskState,
    fields: { outcome?: TaskOutcomeBody; error?: TaskErrorBody },
  ): Promise<boolean> {
    const now = new Date();
    const changed = await em.nativeUpdate(
      Task,
      { id: task.id, state: from },
      {
        state: to,
        ...(fields.outcome ? { outcome: fields.outcome } : {}),
        ...(fields.error ? { error: fields.error } : {}),
        ...(isFinished(to) ? { endedAt: now } : {}),
        updatedAt: now,
      },
    );
    if (changed === 0) return false;
    await this.#event(em, task.id, { state: to, ...(fields.error ? { error: fields.error } : {}) });
    const reloaded = await this.#reload(task.id);
    this.#log.info(
      {
        task: task.id,
        node: task.nodeId,
        from,
        to,
        ...(fields.error ? { reason: fields.error.reason } : {}),
      },
      `task ${to}`,
    );
    this.#bus.publish(task.id, { kind: 'changed', task: reloaded });
    return true;
  }

  async #event(
    em: EntityManager,
    taskId: string,
    event: { state?: TaskState; progress?: TaskProgressBody; error?: TaskErrorBody; message?: string },
  ): Promise<void> {
    const progress =
      event.progress ??
      (event.message
        ? {
            phase: '',
            bytesDone: 0,
            bytesTotal: 0,
            rateBytesPerSecond: 0,
            time: new Date().toISOString(),
            message: event.message,
          }
        : null);
    await em.insert(TaskEvent, {
      id: newId(),
      taskId,
      time: new Date(),
      state: event.state ?? null,
      progress,
      error: event.error ?? null,
    });
  }

  async #reload(taskId: string): Promise<Task> {
    return this.#db.fork().findOneOrFail(Task, { id: taskId });
  }
}
