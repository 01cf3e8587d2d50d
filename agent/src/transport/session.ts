import { setTimeout as sleep } from 'node:timers/promises';
import { credentials, type ServiceError, status } from '@grpc/grpc-js';
import {
  AgentServiceClient,
  type ConnectRequest,
  type ConnectResponse,
} from '../../../build/gen/ingot/v1/agent.ts';
import type { HardwareInventory } from '../../../build/gen/ingot/v1/task.ts';
import type { Logger } from '../log.ts';
import type { TaskRunner } from '../tasks/runner.ts';
import { AGENT_VERSION } from '../version.ts';

/** The controller refused this agent for good (wrong or replaced token, wrong machine): retrying cannot help. */
export class AgentRejectedError extends Error {
  readonly code: status;

  constructor(code: status, message: string) {
    super(message);
    this.name = 'AgentRejectedError';
    this.code = code;
  }
}

export interface SessionOptions {
  /** `host:port` of the controller's gRPC listener. */
  controller: string;
  token: string;
  macs: readonly string[];
  /** Random per process: lets a reconnect take over this process's own stale stream. */
  instanceId: string;
  runner: TaskRunner;
  inventory: () => Promise<HardwareInventory>;
  log: Logger;
  /** First reconnect delay, doubled after each failed attempt. @default 500 ms */
  reconnectMinMs?: number;
  /** Longest reconnect delay. @default 10 s */
  reconnectMaxMs?: number;
}

/** Statuses after which reconnecting cannot succeed. */
const FATAL = new Set<status>([status.UNAUTHENTICATED, status.PERMISSION_DENIED]);

/**
 * The agent's one stream to the controller, kept up for as long as the
 * agent runs: Hello (token, MACs, hardware, running tasks, unacknowledged
 * results), then heartbeats; assignments and cancellations go to the task
 * runner, progress and results come back. A broken stream is reopened with
 * exponential backoff and jitter; tasks keep running meanwhile.
 */
export class AgentSession {
  readonly #opts: SessionOptions;
  readonly #client: AgentServiceClient;

  constructor(opts: SessionOptions) {
    this.#opts = opts;
    this.#client = new AgentServiceClient(opts.controller, credentials.createInsecure(), {
      'grpc.max_reconnect_backoff_ms': 5000,
    });
  }

  /** Runs until `signal` aborts; rejects with AgentRejectedError when the controller refuses the agent. */
  async run(signal: AbortSignal): Promise<void> {
    const min = this.#opts.reconnectMinMs ?? 500;
    const max = this.#opts.reconnectMaxMs ?? 10_000;
    let delay = min;
    try {
      while (!signal.aborted) {
        const { welcomed, error } = await this.#connectOnce(signal);
        if (signal.aborted) break;
        if (error && FATAL.has(error.code)) throw new AgentRejectedError(error.code, error.details);
        if (welcomed) delay = min;
        const wait = Math.round(delay * (0.5 + Math.random() / 2));
        this.#opts.log.warn(
          { retryInMs: wait, code: error?.code, reason: error?.details ?? 'stream ended' },
          'disconnected from the controller; reconnecting',
        );
        await sleep(wait, undefined, { signal }).catch(() => {});
        delay = Math.min(delay * 2, max);
      }
    } finally {
      this.#client.close();
    }
  }

  /** One stream, from Hello to its end. */
  async #connectOnce(signal: AbortSignal): Promise<{ welcomed: boolean; error?: ServiceError }> {
    const { runner, log } = this.#opts;
    // Everything slow happens before the call exists: its error listener must be attached at once.
    const hello = {
      agentToken: this.#opts.token,
      macs: [...this.#opts.macs],
      agentVersion: AGENT_VERSION,
      inventory: await this.#opts.inventory(),
      runningTaskIds: runner.runningIds(),
      pendingResults: runner.pendingResults(),
      instanceId: this.#opts.instanceId,
    };
    const call = this.#client.connect();
    let welcomed = false;
    let heartbeat: NodeJS.Timeout | undefined;
    const send = (message: ConnectRequest) => {
      if (!call.writable) return;
      call.write(message);
    };
    const onAbort = () => call.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      send({ hello });
      return await new Promise((resolve) => {
        call.on('data', (message: ConnectResponse) => {
          if (message.welcome) {
            welcomed = true;
            const every =
              (message.welcome.heartbeatInterval?.seconds ?? 5) * 1000 +
              Math.floor((message.welcome.heartbeatInterval?.nanos ?? 0) / 1e6);
            heartbeat = setInterval(() => send({ heartbeat: { time: new Date() } }), Math.max(every, 100));
            log.info(
              { node: message.welcome.nodeName, nodeId: message.welcome.nodeId },
              'connected to the controller',
            );
            runner.attach(send);
          } else if (message.assignment) {
            runner.start(message.assignment);
          } else if (message.cancellation) {
            runner.cancel(message.cancellation.taskId);
          } else if (message.resultAck) {
            runner.acked(message.resultAck.taskId);
          }
        });
        call.on('error', (error: ServiceError) => {
          if (error.code === status.CANCELLED && signal.aborted) resolve({ welcomed });
          else resolve({ welcomed, error });
        });
        call.on('end', () => resolve({ welcomed }));
      });
    } finally {
      clearInterval(heartbeat);
      runner.detach();
      signal.removeEventListener('abort', onAbort);
      call.removeAllListeners('data');
      // Keep an error listener: a late error on a finished call must not crash the agent.
      call.on('error', () => {});
      call.cancel();
    }
  }
}
