import { randomBytes, randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import type { EntityManager } from '@mikro-orm/sql';
import type {
  ConnectRequest,
  ConnectResponse,
  Hello,
  TaskResult,
} from '../../../build/gen/ingot/v1/agent.ts';
import type { HardwareInventory, TaskProgress } from '../../../build/gen/ingot/v1/task.ts';
import { AgentAlreadyConnectedError, ControllerShuttingDownError } from '../domain/agent-errors.ts';
import {
  IngotError,
  InvalidArgumentError,
  PermissionDeniedError,
  UnauthenticatedError,
} from '../domain/errors.ts';
import { normalizeMac } from '../domain/formats.ts';
import type { HardwareBody, TaskProgressBody } from '../domain/tasks.ts';
import type { Logger } from '../log/logger.ts';
import { AgentSession, AgentToken } from '../store/entities/agent.ts';
import { Node } from '../store/entities/node.ts';
import type { Database } from '../store/orm.ts';
import { hashToken } from '../store/tokens.ts';
import type { ReportedResult, TaskQueue } from './task-queue.ts';

/** How often agents send heartbeats. @default 5 s */
export const HEARTBEAT_INTERVAL_MS = 5_000;
/** A session's lease lasts this many heartbeat intervals. @default 3 */
const LEASE_HEARTBEATS = 3;
/** How long a new stream may take to say Hello. @default 30 s */
const HELLO_TIMEOUT_MS = 30_000;
/** How often a session looks at its node's tasks without being told to (other controllers' changes). @default 2 s */
const DISPATCH_POLL_MS = 2_000;
/** Agent tokens last this long unless asked otherwise. @default 24 h */
export const DEFAULT_AGENT_TOKEN_TTL_MS = 24 * 3600_000;

/** The stream's own end: the lease went to another agent, or the agent stopped sending heartbeats. */
class SessionEndedError extends IngotError {
  constructor(message: string) {
    super(status.ABORTED, 'AGENT_SESSION_ENDED', message);
  }
}

export interface AgentStreamContext {
  /** `host:port` the agent dialled; the host is reused for the image URLs it is sent. */
  authority: string;
  peer: string;
  signal: AbortSignal;
  log: Logger;
}

/**
 * The controller's side of the agents' Connect streams: authenticates the
 * node's agent token, holds the node's lease (one stream per node across
 * every controller sharing the database), passes tasks down and progress
 * and results up.
 */
export class AgentSessions {
  readonly #db: Database;
  readonly #queue: TaskQueue;
  readonly #httpBase: (authority: string) => string;
  readonly #heartbeatMs: number;

  constructor(deps: {
    db: Database;
    queue: TaskQueue;
    /** Base URL (`http://host:port`) of this controller's HTTP listener as an agent that dialled `authority` reaches it. */
    httpBase: (authority: string) => string;
    heartbeatIntervalMs?: number;
  }) {
    this.#db = deps.db;
    this.#queue = deps.queue;
    this.#httpBase = deps.httpBase;
    this.#heartbeatMs = deps.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS;
  }

  /** Mints the node's agent token, replacing any earlier one. Only the hash is kept. */
  async mintToken(
    em: EntityManager,
    nodeId: string,
    ttlMs: number,
  ): Promise<{ token: string; expiresAt: Date }> {
    const token = `ingot_agent_${randomBytes(32).toString('base64url')}`;
    const expiresAt = new Date(Date.now() + ttlMs);
    await em.execute(
      `insert into agent_token (node_id, token_hash, expires_at, created_at) values (?, ?, ?, ?)
       on conflict (node_id) do update set token_hash = excluded.token_hash, expires_at = excluded.expires_at,
         created_at = excluded.created_at`,
      [nodeId, hashToken(token), expiresAt, new Date()],
    );
    return { token, expiresAt };
  }

  /** The agents whose lease is current. */
  async connected(em: EntityManager): Promise<AgentSession[]> {
    return em.find(AgentSession, { expiresAt: { $gt: new Date() } }, { orderBy: { connectedAt: 'asc' } });
  }

  /** Serves one Connect stream until the agent closes it, goes silent or loses its lease. */
  async serve(
    requests: AsyncIterable<ConnectRequest>,
    ctx: AgentStreamContext,
    send: (message: ConnectResponse) => Promise<void>,
  ): Promise<void> {
    const incoming = requests[Symbol.asyncIterator]();
    const first = await withTimeout(incoming.next(), HELLO_TIMEOUT_MS, ctx.signal);
    const hello = first?.done ? undefined : first?.value.hello;
    if (!hello) {
      throw new InvalidArgumentError([
        { field: 'hello', description: 'the first message of Connect must be Hello' },
      ]);
    }
    const em = this.#db.fork();
    const node = await this.#authenticate(em, hello);
    const log = ctx.log.child({ node: node.id, nodeName: node.name });
    const sessionId = randomUUID();
    await this.#claimLease(em, node, sessionId, hello, ctx.peer);
    log.info(
      { version: hello.agentVersion, peer: ctx.peer, running: hello.runningTaskIds },
      'agent connected',
    );

    const stop = new AbortController();
    const stopped = new Promise<never>((_, reject) => {
      stop.signal.addEventListener('abort', () => reject(stop.signal.reason), { once: true });
    });
    stopped.catch(() => {});
    const state = {
      active: new Set(hello.runningTaskIds),
      cancelsSent: new Set<string>(),
      httpBase: this.#httpBase(ctx.authority),
    };
    // Dispatches, results and sends run one at a time, in order.
    let serial: Promise<unknown> = Promise.resolve();
    const run = (step: () => Promise<void>) => {
      const next = serial.then(step);
      serial = next.catch((err: unknown) => stop.abort(err));
      return next;
    };
    const kick = () =>
      void run(async () => {
        for (const directive of await this.#queue.dispatch(node.id, state)) {
          await send(
            'assign' in directive
              ? { assignment: directive.assign }
              : { cancellation: { taskId: directive.cancel } },
          );
        }
      });
    const unsubscribe = this.#queue.bus.onNodeChanged(node.id, kick);
    const onClosing = () => stop.abort(new ControllerShuttingDownError());
    this.#queue.bus.closing.addEventListener('abort', onClosing);
    if (this.#queue.bus.closing.aborted) onClosing();
    let lastHeartbeat = Date.now();
    const poll = setInterval(() => {
      if (Date.now() - lastHeartbeat > LEASE_HEARTBEATS * this.#heartbeatMs) {
        stop.abort(
          new SessionEndedError('no heartbeat from the agent for three intervals; closing its stream'),
        );
        return;
      }
      kick();
    }, DISPATCH_POLL_MS);
    try {
      if (hello.inventory) {
        await this.#queue.saveHardware(em, node.id, hardwareBody(hello.inventory), hello.agentVersion);
      }
      for (const result of hello.pendingResults) {
        await run(() => this.#result(node.id, result, state, send));
      }
      await send({
        welcome: {
          nodeId: node.id,
          nodeName: node.name,
          heartbeatInterval: {
            seconds: Math.floor(this.#heartbeatMs / 1000),
            nanos: (this.#heartbeatMs % 1000) * 1e6,
          },
        },
      });
      kick();
      for (;;) {
        const next = await Promise.race([incoming.next(), stopped]);
        if (next.done) break;
        const message = next.value;
        if (message.heartbeat) {
          lastHeartbeat = Date.now();
          if (!(await this.#renewLease(node.id, sessionId))) {
            throw new SessionEndedError('another agent took over this node; closing this stream');
          }
        } else if (message.progress) {
          if (state.active.has(message.progress.taskId)) {
            this.#queue.progress(message.progress.taskId, progressBody(message.progress));
          }
        } else if (message.result) {
          const result = message.result;
          await run(() => this.#result(node.id, result, state, send));
          kick();
        } else if (message.hello) {
          throw new InvalidArgumentError([
            { field: 'hello', description: 'Hello may only be the first message' },
          ]);
        }
      }
      await serial;
      log.info('agent disconnected');
    } catch (err) {
      if (ctx.signal.aborted) log.info('agent stream cancelled');
      else log.warn({ err }, 'agent stream ended with an error');
      throw err;
    } finally {
      clearInterval(poll);
      unsubscribe();
      this.#queue.bus.closing.removeEventListener('abort', onClosing);
      stop.abort(new Error('stream over'));
      await this.#db.fork().nativeDelete(AgentSession, { nodeId: node.id, sessionId });
    }
  }

  async #result(
    nodeId: string,
    result: TaskResult,
    state: { active: Set<string>; cancelsSent: Set<string> },
    send: (message: ConnectResponse) => Promise<void>,
  ): Promise<void> {
    await this.#queue.finish(nodeId, resultBody(result));
    state.active.delete(result.taskId);
    state.cancelsSent.delete(result.taskId);
    await send({ resultAck: { taskId: result.taskId } });
  }

  async #authenticate(em: EntityManager, hello: Hello): Promise<Node> {
    if (!hello.agentToken) {
      throw new UnauthenticatedError(
        'Hello carries no agent token; start the agent with --token or ingot.token=',
      );
    }
    const row = await em.findOne(AgentToken, { tokenHash: hashToken(hello.agentToken) });
    if (!row) {
      throw new UnauthenticatedError(
        'the agent token is not valid (mistyped, or replaced by a newer one); mint one with `bmctl node agent-token`',
      );
    }
    if (row.expiresAt.getTime() <= Date.now()) {
      throw new UnauthenticatedError(
        `the agent token expired at ${row.expiresAt.toISOString()}; mint one with \`bmctl node agent-token\``,
      );
    }
    const node = await em.findOne(Node, { id: row.nodeId });
    if (!node) throw new UnauthenticatedError('the agent token belongs to a node that no longer exists');
    const macs = hello.macs.map((m) => normalizeMac(m) ?? m.toLowerCase());
    if (!macs.includes(node.mac)) {
      throw new PermissionDeniedError(
        `this token belongs to node ${node.name} (MAC ${node.mac}), which is not among this machine's MACs ` +
          `(${macs.join(', ') || 'none'}); is the agent running on the right server?`,
      );
    }
    return node;
  }

  /**
   * Takes the node's lease: free, expired, or held by this same agent
   * process (a reconnect after a network blip, before the old stream was
   * noticed gone). One statement, so two controllers never both win.
   */
  async #claimLease(
    em: EntityManager,
    node: Node,
    sessionId: string,
    hello: Hello,
    peer: string,
  ): Promise<void> {
    const now = new Date();
    const rows = await em.execute<{ session_id: string }[]>(
      `insert into agent_session (node_id, session_id, instance_id, agent_version, peer, connected_at, heartbeat_at, expires_at)
       values (?, ?, ?, ?, ?, ?, ?, ?)
       on conflict (node_id) do update set session_id = excluded.session_id, instance_id = excluded.instance_id,
         agent_version = excluded.agent_version, peer = excluded.peer, connected_at = excluded.connected_at,
         heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at
       where agent_session.expires_at < excluded.connected_at
          or (excluded.instance_id <> '' and agent_session.instance_id = excluded.instance_id)
       returning session_id`,
      [node.id, sessionId, hello.instanceId, hello.agentVersion, peer, now, now, this.#leaseEnd(now)],
    );
    if (rows[0]?.session_id !== sessionId) throw new AgentAlreadyConnectedError(node.name);
  }

  async #renewLease(nodeId: string, sessionId: string): Promise<boolean> {
    const now = new Date();
    const renewed = await this.#db
      .fork()
      .nativeUpdate(
        AgentSession,
        { nodeId, sessionId },
        { heartbeatAt: now, expiresAt: this.#leaseEnd(now) },
      );
    return renewed > 0;
  }

  #leaseEnd(now: Date): Date {
    return new Date(now.getTime() + LEASE_HEARTBEATS * this.#heartbeatMs);
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, signal: AbortSignal): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const onAbort = new Promise<undefined>((resolve) => {
    signal.addEventListener('abort', () => resolve(undefined), { once: true });
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise, onAbort]);
  } finally {
    clearTimeout(timer);
  }
}

export function hardwareBody(inventory: HardwareInventory): HardwareBody {
  return {
    cpuCount: inventory.cpuCount,
    cpuModel: inventory.cpuModel,
    ramBytes: inventory.ramBytes,
    disks: inventory.disks.map((d) => ({ ...d })),
    nics: inventory.nics.map((n) => ({ ...n })),
  };
}

function progressBody(progress: TaskProgress): TaskProgressBody {
  return {
    phase: progress.phase,
    bytesDone: progress.bytesDone,
    bytesTotal: progress.bytesTotal,
    rateBytesPerSecond: progress.rateBytesPerSecond,
    time: (progress.time ?? new Date()).toISOString(),
    message: progress.message,
  };
}

function resultBody(result: TaskResult): ReportedResult {
  if (result.outcome) {
    return {
      taskId: result.taskId,
      outcome: {
        sha256: result.outcome.sha256,
        bytesWritten: result.outcome.bytesWritten,
        ...(result.outcome.inventory ? { inventory: hardwareBody(result.outcome.inventory) } : {}),
        ...(result.outcome.partitionTable
          ? {
              bytesSent: result.outcome.bytesSent,
              bytesRead: result.outcome.bytesRead,
              unreadable: result.outcome.unreadable.map((r) => ({
                offsetBytes: r.offsetBytes,
                lengthBytes: r.lengthBytes,
                error: r.error,
              })),
              partitionTable: {
                ...result.outcome.partitionTable,
                warnings: [...result.outcome.partitionTable.warnings],
              },
            }
          : {}),
      },
    };
  }
  return {
    taskId: result.taskId,
    error: result.error
      ? { reason: result.error.reason, message: result.error.message, metadata: result.error.metadata }
      : {
          reason: 'AGENT_ERROR',
          message: 'the agent reported neither an outcome nor an error',
          metadata: {},
        },
  };
}
