import type { EntityManager } from '@mikro-orm/sql';
import { IngotError } from '../domain/errors.ts';
import type { PowerState } from '../drivers/power/power-driver.ts';
import type { PowerManager } from '../drivers/power/power-manager.ts';
import { powerNodeOf } from '../drivers/power/registry.ts';
import type { Logger } from '../log/logger.ts';
import { Node } from '../store/entities/node.ts';
import type { Database } from '../store/orm.ts';
import type { SecretBox } from '../store/secrets.ts';

/**
 * Records what a BMC reported, in one statement so that concurrent writers
 * (the sync, a power RPC, another controller) cannot interleave: the state,
 * its time, no error, and the drift start when it differs from the expected
 * state (kept from the first observation of the drift), null otherwise.
 * Resolves to true when this observation starts a drift.
 */
export async function recordPowerState(
  em: EntityManager,
  nodeId: string,
  observed: PowerState,
  at: Date,
): Promise<boolean> {
  const rows = (await em.getConnection().execute(
    `update "node" set "power_state" = ?, "power_state_time" = ?, "power_error" = null,
       "power_drift_time" = case when "expected_power_state" is not null and "expected_power_state" <> ?
         then coalesce("power_drift_time", ?) else null end
     where "id" = ? returning "power_drift_time"`,
    [observed, at, observed, at, nodeId],
  )) as { power_drift_time: Date | string | null }[];
  const drift = rows[0]?.power_drift_time;
  return drift !== null && drift !== undefined && new Date(drift).getTime() === at.getTime();
}

/** Ingot asked for `expected`: the drift clock restarts at the next observation. */
export async function recordExpectedPowerState(
  em: EntityManager,
  nodeId: string,
  expected: PowerState,
): Promise<void> {
  await em.nativeUpdate(Node, { id: nodeId }, { expectedPowerState: expected, powerDriftTime: null });
}

export async function recordPowerError(em: EntityManager, nodeId: string, message: string): Promise<void> {
  await em.nativeUpdate(Node, { id: nodeId }, { powerError: message });
}

export interface PowerSyncOptions {
  db: Database;
  secrets: SecretBox;
  power: PowerManager;
  log: Logger;
  /** Time between two rounds, jittered by ±10 %. @default 60000 */
  intervalMs?: number;
  /** Nodes asked at once in a round (the BMC queue's global limit also applies). @default 8 */
  concurrency?: number;
}

/** What one round saw. */
export interface PowerSyncReport {
  /** Nodes whose BMC answered. */
  checked: number;
  /** Nodes whose BMC failed; their `power_error` says why. */
  failed: number;
  /** Nodes whose observed state differs from the expected one (new or ongoing drift). */
  drifted: number;
  /** Nodes skipped because a power operation on them was under way. */
  skipped: number;
}

/**
 * The power-state sync: every interval, asks each node's BMC for its power
 * state with bounded concurrency and records the answer (or the error) and
 * any drift from the state Ingot expects. It changes no power: drift is for
 * operators and flows to act on.
 */
export class PowerSync {
  readonly #opts: Required<Omit<PowerSyncOptions, 'log'>> & { log: Logger };
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<unknown> | undefined;
  #abort = new AbortController();
  #stopped = false;

  constructor(opts: PowerSyncOptions) {
    this.#opts = {
      intervalMs: 60_000,
      concurrency: 8,
      ...opts,
      log: opts.log.child({ component: 'power-sync' }),
    };
  }

  /** Starts the loop; the first round runs after one (jittered) interval. */
  start(): void {
    this.#stopped = false;
    this.#schedule();
  }

  /** Stops the loop, cancels a round in progress and waits for it to end. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#abort.abort(new Error('power sync stopped'));
    await this.#round?.catch(() => undefined);
    this.#abort = new AbortController();
  }

  #schedule(): void {
    if (this.#stopped) return;
    const jitter = 1 + (Math.random() * 0.2 - 0.1);
    this.#timer = setTimeout(() => {
      this.#round = this.runOnce(this.#abort.signal)
        .catch((err: unknown) => this.#opts.log.error({ err }, 'power sync round failed'))
        .finally(() => this.#schedule());
    }, this.#opts.intervalMs * jitter);
    this.#timer.unref();
  }

  /** One round over every node. */
  async runOnce(signal?: AbortSignal): Promise<PowerSyncReport> {
    const { db, power, secrets, log, concurrency } = this.#opts;
    const nodes = await db.fork().find(Node, {}, { orderBy: { name: 'asc' } });
    const report: PowerSyncReport = { checked: 0, failed: 0, drifted: 0, skipped: 0 };
    let next = 0;
    const worker = async () => {
      while (next < nodes.length && !signal?.aborted) {
        const node = nodes[next++] as Node;
        if (power.busy(node.name)) {
          report.skipped++;
          continue;
        }
        const em = db.fork();
        try {
          // No retries: the next round asks again, and a dead BMC should not hold a worker for long.
          const observed = await power.powerState(powerNodeOf(node, secrets), { signal, retries: 0 });
          report.checked++;
          const driftStarted = await recordPowerState(em, node.id, observed, new Date());
          const expected = node.expectedPowerState;
          if (expected !== null && expected !== observed) {
            report.drifted++;
            if (driftStarted) log.warn({ node: node.name, expected, observed }, 'power state drift');
          }
        } catch (err) {
          if (signal?.aborted) return;
          report.failed++;
          const message =
            err instanceof IngotError ? err.message : 'unexpected error; see the controller log';
          if (!(err instanceof IngotError)) log.error({ err, node: node.name }, 'power sync failed');
          await recordPowerError(em, node.id, message).catch(() => undefined);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, nodes.length) }, worker));
    log.debug({ ...report, nodes: nodes.length }, 'power sync round');
    return report;
  }
}
