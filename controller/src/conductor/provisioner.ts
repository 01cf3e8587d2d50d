import {
  currentStep,
  type FlowKind,
  NODE_STATE_DURING,
  NODE_STATE_FAILED,
  nextStep,
  type StepName,
} from '../domain/flows.ts';
import { SwitchError } from '../drivers/network/errors.ts';
import { BmcError } from '../drivers/power/errors.ts';
import type { Logger } from '../log/logger.ts';
import { Instance, InstanceStep } from '../store/entities/instance.ts';
import { Node } from '../store/entities/node.ts';
import type { Database } from '../store/orm.ts';
import { FlowChangedError, FlowError, FlowSteps, type FlowStepsDeps } from './flow-steps.ts';

/**
 * The conductor of bare-metal flows: it finds instances whose node has a
 * flow to run (deploy, delete), takes a lease on each in the database so
 * that no two controllers drive one node, and runs the flow's steps in
 * order. Each step is recorded before it runs and after it ends, so a
 * controller that died anywhere resumes at the step it was in (its own
 * leases at once on restart, another controller's once they expire). A
 * failed step puts the instance in ERROR with the reason and leaves the
 * node safe: no netboot entry, tasks cancelled, port on the service network
 * (or where it was, when the switch refused), powered off.
 */
/** How long a failed flow's power-off may take before the node is left as it is. */
const SAFE_POWER_OFF_MS = 60_000;

export class Provisioner {
  readonly #d: FlowStepsDeps & { owner: string };
  readonly #db: Database;
  readonly #log: Logger;
  readonly #steps: FlowSteps;
  readonly #running = new Map<string, Promise<void>>();
  readonly #stopping = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #scanning: Promise<void> | undefined;
  #scanAgain = false;

  constructor(deps: FlowStepsDeps & { owner: string }) {
    this.#d = deps;
    this.#db = deps.db;
    this.#log = deps.log.child({ component: 'provisioner' });
    this.#steps = new FlowSteps({ ...deps, log: this.#log });
  }

  start(): void {
    this.kick();
    this.#timer = setInterval(() => this.kick(), this.#d.settings.scanIntervalMs);
    this.#timer.unref();
  }

  /** Looks for flows to drive now (after a boot or delete request). */
  kick(): void {
    if (this.#stopping.signal.aborted) return;
    if (this.#scanning) {
      this.#scanAgain = true;
      return;
    }
    this.#scanning = this.#scan()
      .catch((err: unknown) => this.#log.error({ err }, 'looking for flows failed'))
      .finally(() => {
        this.#scanning = undefined;
        if (this.#scanAgain) {
          this.#scanAgain = false;
          this.kick();
        }
      });
  }

  /** Stops driving flows (each stops at its next wait) and hands their leases back. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#stopping.abort(new Error('the controller is stopping'));
    await this.#scanning;
    await Promise.all(this.#running.values());
    await this.#db
      .fork()
      .nativeUpdate(Instance, { leaseOwner: this.#d.owner }, { leaseOwner: null, leaseExpiresAt: null });
  }

  async #scan(): Promise<void> {
    const now = new Date();
    const candidates = await this.#db.fork().find(
      Instance,
      {
        flow: { $ne: null },
        $or: [{ leaseOwner: null }, { leaseOwner: this.#d.owner }, { leaseExpiresAt: { $lt: now } }],
      },
      { fields: ['id'], orderBy: { createdAt: 'asc' } },
    );
    for (const { id } of candidates) {
      if (this.#running.has(id) || this.#stopping.signal.aborted) continue;
      if (await this.#takeLease(id)) this.#launch(id);
    }
  }

  async #takeLease(id: string): Promise<boolean> {
    const now = new Date();
    const taken = await this.#db.fork().nativeUpdate(
      Instance,
      {
        id,
        flow: { $ne: null },
        $or: [{ leaseOwner: null }, { leaseOwner: this.#d.owner }, { leaseExpiresAt: { $lt: now } }],
      },
      { leaseOwner: this.#d.owner, leaseExpiresAt: new Date(now.getTime() + this.#d.settings.leaseMs) },
    );
    return taken === 1;
  }

  async #renewLease(id: string): Promise<boolean> {
    const renewed = await this.#db
      .fork()
      .nativeUpdate(
        Instance,
        { id, leaseOwner: this.#d.owner },
        { leaseExpiresAt: new Date(Date.now() + this.#d.settings.leaseMs) },
      );
    return renewed === 1;
  }

  #launch(id: string): void {
    const lost = new AbortController();
    const signal = AbortSignal.any([this.#stopping.signal, lost.signal]);
    const renew = setInterval(() => {
      this.#renewLease(id)
        .then((held) => {
          if (!held) lost.abort(new Error('another controller took the flow over'));
        })
        .catch((err: unknown) => this.#log.warn({ err, instance: id }, 'could not renew the flow lease'));
    }, this.#d.settings.leaseMs / 3);
    const run = this.#drive(id, signal)
      .catch((err: unknown) => this.#log.error({ err, instance: id }, 'flow stopped by an unexpected error'))
      .finally(async () => {
        clearInterval(renew);
        if (!signal.aborted) {
          await this.#db
            .fork()
            .nativeUpdate(
              Instance,
              { id, leaseOwner: this.#d.owner },
              { leaseOwner: null, leaseExpiresAt: null },
            )
            .catch(() => undefined);
        }
        this.#running.delete(id);
      });
    this.#running.set(id, run);
  }

  /** Runs the instance's flow step by step until it ends, fails, or this controller stops driving it. */
  async #drive(id: string, signal: AbortSignal): Promise<void> {
    for (;;) {
      if (signal.aborted) return;
      const em = this.#db.fork();
      const instance = await em.findOne(Instance, { id });
      if (!instance?.flow) return;
      const flow = instance.flow;
      const node = await em.findOne(Node, { id: instance.hostId });
      const step = currentStep(flow, instance.step);
      if (!node) {
        await this.#fail(
          instance,
          undefined,
          flow,
          step,
          new FlowError('the node is gone from the inventory'),
        );
        return;
      }
      const record = await this.#begin(instance, node, flow, step);
      const started = Date.now();
      let message: string;
      try {
        message = await this.#steps.run(step, {
          instance,
          node,
          flow,
          signal,
          note: (text) => this.#note(record, text),
        });
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof FlowChangedError) continue;
        await this.#fail(instance, node, flow, step, err, record);
        return;
      }
      if (step === 'release') {
        this.#log.info({ instance: id, node: node.name }, 'instance deleted, node available');
        this.#d.bus.publish(id, { kind: 'changed' });
        return;
      }
      const next = nextStep(flow, step);
      await this.#end(instance, node, flow, step, next, record, message, Date.now() - started);
      if (!next) return;
    }
  }

  /** Records the step as running (a step left running by a dead controller is taken over) and the states it implies. */
  async #begin(instance: Instance, node: Node, flow: FlowKind, step: StepName): Promise<string> {
    const recordId = await this.#db.fork().transactional(async (tx) => {
      const open = await tx.findOne(InstanceStep, {
        instanceId: instance.id,
        flow,
        name: step,
        state: 'running',
      });
      let rowId: string;
      if (open) {
        open.owner = this.#d.owner;
        open.message = 'resumed after the controller driving it stopped';
        rowId = open.id;
      } else {
        rowId = tx.create(InstanceStep, {
          instanceId: instance.id,
          flow,
          name: step,
          state: 'running',
          startTime: new Date(),
          endTime: null,
          message: '',
          owner: this.#d.owner,
        }).id;
      }
      await tx.nativeUpdate(
        Instance,
        { id: instance.id, flow },
        { state: flow === 'deploy' ? 'deploying' : 'deleting', step, reason: '' },
      );
      await tx.nativeUpdate(Node, { id: node.id }, { provisionState: NODE_STATE_DURING[flow] });
      return rowId;
    });
    this.#log.info({ instance: instance.id, node: node.name, flow, step }, 'step started');
    this.#d.bus.publish(instance.id, { kind: 'changed' });
    return recordId;
  }

  async #note(recordId: string, message: string): Promise<void> {
    await this.#db.fork().nativeUpdate(InstanceStep, { id: recordId }, { message });
  }

  async #end(
    instance: Instance,
    node: Node,
    flow: FlowKind,
    step: StepName,
    next: StepName | undefined,
    recordId: string,
    message: string,
    durationMs: number,
  ): Promise<void> {
    await this.#db.fork().transactional(async (tx) => {
      await tx.nativeUpdate(InstanceStep, { id: recordId }, { state: 'done', endTime: new Date(), message });
      if (next) {
        await tx.nativeUpdate(Instance, { id: instance.id, flow, step }, { step: next });
        return;
      }
      // The deploy's last step: the instance is ACTIVE.
      const done = await tx.nativeUpdate(
        Instance,
        { id: instance.id, flow, step },
        { state: 'active', flow: null, step: '', taskId: null, reason: '' },
      );
      if (done === 1)
        await tx.nativeUpdate(Node, { id: node.id }, { provisionState: 'active', lastError: '' });
    });
    this.#log.info({ instance: instance.id, node: node.name, flow, step, durationMs, message }, 'step done');
    if (!next) this.#log.info({ instance: instance.id, node: node.name }, 'instance active');
    this.#d.bus.publish(instance.id, { kind: 'changed' });
  }

  /**
   * Leaves the node safe, then records the failure: the instance in ERROR
   * with an actionable reason, the node in `deploy failed` / `clean failed`.
   */
  async #fail(
    instance: Instance,
    node: Node | undefined,
    flow: FlowKind,
    step: StepName,
    err: unknown,
    recordId?: string,
  ): Promise<void> {
    const reason = `${step}: ${describe(err)}`;
    this.#log.error({ instance: instance.id, node: node?.name, flow, step, err }, 'flow failed');
    const safety = node ? await this.#makeSafe(node, err) : [];
    const full = safety.length > 0 ? `${reason} (${safety.join('; ')})` : reason;
    await this.#db.fork().transactional(async (tx) => {
      if (recordId) {
        await tx.nativeUpdate(
          InstanceStep,
          { id: recordId },
          { state: 'failed', endTime: new Date(), message: full },
        );
      }
      await tx.nativeUpdate(
        Instance,
        { id: instance.id, flow },
        { state: 'error', reason: full, flow: null, step, leaseOwner: null, leaseExpiresAt: null },
      );
      if (node) {
        await tx.nativeUpdate(
          Node,
          { id: node.id },
          { provisionState: NODE_STATE_FAILED[flow], lastError: full },
        );
      }
    });
    this.#d.bus.publish(instance.id, { kind: 'changed' });
  }

  /** Best effort, each part on its own: what could not be made safe is said in the reason. */
  async #makeSafe(node: Node, cause: unknown): Promise<string[]> {
    const problems: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        problems.push(`could not ${what}: ${describe(err)}`);
      }
    };
    await attempt('cancel the agent tasks', () => this.#steps.cancelUnfinished(node.id));
    if (this.#d.netboot) {
      const netboot = this.#d.netboot;
      await attempt('remove the netboot entry', () => netboot.remove({ nodeId: node.id, mac: node.mac }));
    }
    // A switch that refused keeps the port where it was; otherwise it goes (back) to the service network.
    if (node.switchId && !(cause instanceof SwitchError)) {
      await attempt('move the port to the service network', () =>
        this.#d.network.moveToServiceNetwork(node.id),
      );
    }
    if (!(cause instanceof BmcError)) {
      await attempt('power the node off', () =>
        this.#steps.powerOff(node, AbortSignal.timeout(SAFE_POWER_OFF_MS)),
      );
    } else {
      problems.push('the node could not be powered off: its BMC failed');
    }
    return problems;
  }
}

/** A failure as one line for an operator (errors from drivers and steps already say what to do). */
function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
