import { setTimeout as sleep } from 'node:timers/promises';
import { FailedPreconditionError, NotFoundError } from '../domain/errors.ts';
import { SwitchConfigRejectedError, SwitchError } from '../drivers/network/errors.ts';
import type { NetworkRef } from '../drivers/network/network-driver.ts';
import { type NetworkDrivers, networkDriverFor, switchTargetOf } from '../drivers/network/registry.ts';
import type { Logger } from '../log/logger.ts';
import { Network } from '../store/entities/network.ts';
import { Node } from '../store/entities/node.ts';
import { Switch } from '../store/entities/switch.ts';
import type { Database } from '../store/orm.ts';
import { findByRef } from '../store/resource-repository.ts';
import type { SecretBox } from '../store/secrets.ts';

export interface PortFlipperOptions {
  /** Tries for a batch that fails transiently (lock held, switch unreachable, timeout). @default 3 */
  attempts?: number;
  /** Wait before the second try; doubles after each. @default 500 ms */
  backoffMs?: number;
}

/** Where a node's port went. */
export interface NodeNetworkResult {
  nodeId: string;
  nodeName: string;
  switchId: string;
  switchPort: string;
  networkId: string;
  networkName: string;
  /** False when the port already was on the network. */
  changed: boolean;
}

/** A port as the switch reports it, next to Ingot's record. */
export interface PortStatusResult {
  switchId: string;
  switchName: string;
  port: string;
  mode: string;
  vlanIds: number[];
  bridge: string;
  link: string;
  /** The network the switch's state matches, if exactly one does. */
  network: { id: string; name: string } | undefined;
  /** The node on this port per the inventory. */
  node: { id: string; name: string; networkId: string | null } | undefined;
  /** The switch agrees with what Ingot recorded for the node. */
  inSync: boolean;
}

interface Pending {
  nodeId: string;
  port: string;
  network: Network;
  waiters: { resolve: (changed: boolean) => void; reject: (err: unknown) => void }[];
}

interface SwitchQueue {
  /** Moves waiting for the next session, by port: a later request for a port replaces an earlier one. */
  pending: Map<string, Pending>;
  draining: boolean;
  /** Every session with this switch runs after the previous one: one session at a time. */
  chain: Promise<unknown>;
}

/**
 * Moves nodes' switch ports between networks. The wanted network is recorded
 * on the node (`target_network_id`) before the switch is touched, and the
 * reached one (`network_id`) after the switch confirmed it, so a restarted
 * controller finds unfinished moves and re-applies them (`reconcile`); drivers
 * make re-applying idempotent. Each switch gets one session at a time, and
 * every move requested while a session runs joins the next one: a batch is
 * one commit on the switch. Transient failures (lock held, unreachable,
 * timeout) are retried with backoff; a rejected change that names some ports
 * fails only those and the rest of the batch is tried again.
 *
 * The batching is in memory, which is safe because nothing depends on it for
 * correctness: moves are idempotent and the switch's own lock keeps two
 * controllers from committing at once.
 */
export class PortFlipper {
  readonly #db: Database;
  readonly #drivers: NetworkDrivers;
  readonly #secrets: SecretBox;
  readonly #log: Logger;
  readonly #attempts: number;
  readonly #backoffMs: number;
  readonly #queues = new Map<string, SwitchQueue>();
  readonly #stopping = new AbortController();

  constructor(
    deps: { db: Database; drivers: NetworkDrivers; secrets: SecretBox; log: Logger },
    opts: PortFlipperOptions = {},
  ) {
    this.#db = deps.db;
    this.#drivers = deps.drivers;
    this.#secrets = deps.secrets;
    this.#log = deps.log.child({ component: 'port-flips' });
    this.#attempts = opts.attempts ?? 3;
    this.#backoffMs = opts.backoffMs ?? 500;
  }

  /**
   * Puts the node's port on the network (ids or names) and resolves once the
   * switch has it. Rejects with NotFoundError, FailedPreconditionError
   * (NODE_NOT_ON_SWITCH) or the driver's SwitchError; the failure is also
   * recorded on the node (`network_error`).
   */
  async setNodeNetwork(nodeRef: string, networkRef: string): Promise<NodeNetworkResult> {
    const { node, network, sw } = await this.#db.fork().transactional(async (tx) => {
      const row = await findByRef(tx, 'node', Node, nodeRef, { lock: true });
      const net = await findByRef(tx, 'network', Network, networkRef);
      if (!row.switchId || !row.switchPort) {
        throw new FailedPreconditionError(
          'NODE_NOT_ON_SWITCH',
          `node ${row.name} has no switch port; set its switch_id and switch_port first`,
          { node: row.name },
        );
      }
      const swRow = await tx.findOne(Switch, { id: row.switchId });
      if (!swRow) throw new NotFoundError('switch', row.switchId);
      row.targetNetworkId = net.id;
      row.networkError = null;
      await tx.flush();
      return { node: row, network: net, sw: swRow };
    });
    const changed = await this.#enqueue(sw.id, node.id, node.switchPort, network);
    return {
      nodeId: node.id,
      nodeName: node.name,
      switchId: sw.id,
      switchPort: node.switchPort,
      networkId: network.id,
      networkName: network.name,
      changed,
    };
  }

  /**
   * Puts the node's port on the service network (the provisioning flow's first network step).
   * FailedPreconditionError NO_SERVICE_NETWORK when none is defined.
   */
  async moveToServiceNetwork(nodeRef: string): Promise<NodeNetworkResult> {
    const service = await this.#db.fork().findOne(Network, { kind: 'service' }, { fields: ['id'] });
    if (!service) {
      throw new FailedPreconditionError(
        'NO_SERVICE_NETWORK',
        'there is no service network; create one (bmctl network create NAME --service --vlan ID)',
      );
    }
    return this.setNodeNetwork(nodeRef, service.id);
  }

  /** Reads a port from the switch and compares it with Ingot's record. */
  async portStatus(switchRef: string, port: string): Promise<PortStatusResult> {
    const em = this.#db.fork();
    const sw = await findByRef(em, 'switch', Switch, switchRef);
    const driver = networkDriverFor(this.#drivers, sw);
    const target = switchTargetOf(sw, this.#secrets);
    const status = await this.#exclusive(sw.id, () =>
      driver.portStatus(target, port, {
        signal: this.#stopping.signal,
        onHostKey: (fp) => this.#pin(sw, fp),
      }),
    );
    const node = await em.findOne(Node, { switchId: sw.id, switchPort: port });
    let matches: Network[] = [];
    if (status.bridge) matches = await em.find(Network, { bridge: status.bridge });
    else if (status.vlanIds.length === 1) matches = await em.find(Network, { vlanId: status.vlanIds[0] });
    const network = matches.length === 1 ? matches[0] : undefined;
    return {
      switchId: sw.id,
      switchName: sw.name,
      port,
      mode: status.mode,
      vlanIds: status.vlanIds,
      bridge: status.bridge,
      link: status.link,
      network: network && { id: network.id, name: network.name },
      node: node ? { id: node.id, name: node.name, networkId: node.networkId ?? null } : undefined,
      inSync: Boolean(node && network && node.networkId === network.id),
    };
  }

  /**
   * Re-applies every move that a previous run recorded but did not finish
   * (target differs from the reached network). Resolves with how many it
   * started; their outcomes are logged and recorded on the nodes.
   */
  async reconcile(): Promise<number> {
    const nodes = await this.#db
      .fork()
      .find(Node, { targetNetworkId: { $ne: null }, switchId: { $ne: null } });
    const unfinished = nodes.filter((n) => n.targetNetworkId && n.targetNetworkId !== n.networkId);
    for (const n of unfinished) {
      this.setNodeNetwork(n.id, n.targetNetworkId as string).then(
        (r) => this.#log.info({ node: n.name, network: r.networkName }, 'unfinished port move re-applied'),
        (err: unknown) => this.#log.warn({ node: n.name, err }, 'unfinished port move failed again'),
      );
    }
    return unfinished.length;
  }

  /** Moves waiting for a switch session, over all switches (a gauge for metrics and tests). */
  get pendingMoves(): number {
    let n = 0;
    for (const q of this.#queues.values()) n += q.pending.size;
    return n;
  }

  /** Drops every switch session in progress (the switches roll back what was not confirmed) and waits. */
  async stop(): Promise<void> {
    this.#stopping.abort(new Error('controller stopping'));
    await Promise.all([...this.#queues.values()].map((q) => q.chain));
  }

  #queue(switchId: string): SwitchQueue {
    let q = this.#queues.get(switchId);
    if (!q) {
      q = { pending: new Map(), draining: false, chain: Promise.resolve() };
      this.#queues.set(switchId, q);
    }
    return q;
  }

  #exclusive<T>(switchId: string, fn: () => Promise<T>): Promise<T> {
    const q = this.#queue(switchId);
    const run = q.chain.then(fn, fn);
    q.chain = run.catch(() => undefined);
    return run;
  }

  #enqueue(switchId: string, nodeId: string, port: string, network: Network): Promise<boolean> {
    const q = this.#queue(switchId);
    return new Promise<boolean>((resolve, reject) => {
      const waiting = q.pending.get(port);
      if (waiting) {
        waiting.network = network;
        waiting.nodeId = nodeId;
        waiting.waiters.push({ resolve, reject });
      } else {
        q.pending.set(port, { nodeId, port, network, waiters: [{ resolve, reject }] });
      }
      if (!q.draining) {
        q.draining = true;
        void this.#exclusive(switchId, () => this.#drain(switchId, q));
      }
    });
  }

  async #drain(switchId: string, q: SwitchQueue): Promise<void> {
    // Let moves requested in the same tick (a flow moving a rack) join the first batch.
    await new Promise((r) => setImmediate(r));
    try {
      while (q.pending.size > 0) {
        const batch = [...q.pending.values()];
        q.pending.clear();
        await this.#runBatch(switchId, batch);
      }
    } finally {
      q.draining = false;
    }
  }

  /** Applies one batch and settles its waiters; never throws. */
  async #runBatch(switchId: string, batch: Pending[]): Promise<void> {
    const em = this.#db.fork();
    let remaining = batch;
    try {
      const sw = await em.findOne(Switch, { id: switchId });
      if (!sw) throw new NotFoundError('switch', switchId);
      const driver = networkDriverFor(this.#drivers, sw);
      const target = switchTargetOf(sw, this.#secrets);
      const log = this.#log.child({ switch: sw.name, driver: sw.driver });
      for (let attempt = 1; remaining.length > 0; attempt++) {
        const started = Date.now();
        try {
          const outcomes = await driver.applyPortChanges(
            target,
            remaining.map((p) => ({ port: p.port, network: networkRef(p.network) })),
            { signal: this.#stopping.signal, onHostKey: (fp) => this.#pin(sw, fp) },
          );
          const changed = new Map(outcomes.map((o) => [o.port, o.changed]));
          log.info(
            {
              ports: remaining.length,
              changed: outcomes.filter((o) => o.changed).length,
              durationMs: Date.now() - started,
            },
            'ports moved',
          );
          await this.#recordSuccess(remaining);
          for (const p of remaining) for (const w of p.waiters) w.resolve(changed.get(p.port) ?? false);
          return;
        } catch (err) {
          if (
            err instanceof SwitchError &&
            err.transient &&
            attempt < this.#attempts &&
            !this.#stopping.signal.aborted
          ) {
            const waitMs = this.#backoffMs * 2 ** (attempt - 1);
            log.warn({ err: err.message, attempt, waitMs }, 'port move failed; retrying');
            await sleep(waitMs);
            continue;
          }
          const named =
            err instanceof SwitchConfigRejectedError && remaining.length > 1
              ? remaining.filter((p) => mentionsPort(err.switchMessage, p.port))
              : [];
          if (named.length > 0 && named.length < remaining.length) {
            // The switch named the ports it refused: fail those, try the others again on their own.
            log.warn(
              { err: (err as Error).message, ports: named.map((p) => p.port) },
              'switch refused some ports',
            );
            await this.#recordFailure(named, err);
            remaining = remaining.filter((p) => !named.includes(p));
            attempt = 0;
            continue;
          }
          throw err;
        }
      }
    } catch (err) {
      this.#log.warn({ switchId, err }, 'port move failed');
      await this.#recordFailure(remaining, err);
    }
  }

  async #recordSuccess(moved: Pending[]): Promise<void> {
    const em = this.#db.fork();
    const now = new Date();
    for (const p of moved) {
      await em.nativeUpdate(
        Node,
        { id: p.nodeId },
        { networkId: p.network.id, networkTime: now, networkError: null },
      );
    }
  }

  async #recordFailure(failed: Pending[], err: unknown): Promise<void> {
    const message = err instanceof Error ? err.message : String(err);
    const em = this.#db.fork();
    for (const p of failed) {
      await em
        .nativeUpdate(Node, { id: p.nodeId }, { networkError: message })
        .catch((dbErr: unknown) => this.#log.error({ err: dbErr }, 'could not record a port move failure'));
      for (const w of p.waiters) w.reject(err);
    }
  }

  /** Trust on first use: pins the key only if none was pinned meanwhile. */
  #pin(sw: Switch, fingerprint: string): void {
    this.#db
      .fork()
      .nativeUpdate(Switch, { id: sw.id, hostKeyFingerprint: '' }, { hostKeyFingerprint: fingerprint })
      .then(
        (n) => {
          if (n > 0) this.#log.info({ switch: sw.name, fingerprint }, 'switch host key pinned on first use');
        },
        (err: unknown) => this.#log.error({ switch: sw.name, err }, 'could not pin the switch host key'),
      );
  }
}

function networkRef(n: Network): NetworkRef {
  return { name: n.name, vlanId: n.vlanId, bridge: n.bridge };
}

/** Junos names a unit (`ge-0/0/3.0`); other switches the port itself. */
function mentionsPort(message: string, port: string): boolean {
  const escaped = port.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  return new RegExp(`(^|[^\\w/-])${escaped}(\\.\\d+)?($|[^\\w/-])`).test(message);
}
