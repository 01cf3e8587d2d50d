import type { EntityManager } from '@mikro-orm/sql';
import type { Logger } from '../log/logger.ts';
import { FlowStep } from '../store/entities/flow-step.ts';
import { Node } from '../store/entities/node.ts';
import type { Database } from '../store/orm.ts';
import type { FlowBus } from './flow-bus.ts';
import { describeFailure, FlowChangedError, FlowError } from './flow-steps.ts';

/** The columns every flow subject (an instance, a capture) has. */
export interface FlowSubject {
  id: string;
  flow?: string | null;
  step?: string;
  leaseOwner?: string | null;
  leaseExpiresAt?: Date | null;
}

/** What a step works on: the subject and its node as read just before the step started. */
export interface SubjectStepContext<S> {
  subject: S;
  node: Node;
  flow: string;
  signal: AbortSignal;
  /** Notes a retry on the running step's record (its message). */
  note(message: string): Promise<void>;
}

/**
 * One kind of flow subject: its table, its flows' steps, and what its rows
 * and its node look like while a step runs, after the last one, and after a
 * failure.
 */
export interface FlowDefinition<S extends FlowSubject> {
  /** `instance`, `capture`: for logs. */
  readonly name: string;
  readonly entity: { new (...args: never[]): S };
  nodeIdOf(subject: S): string;
  /** The flow's steps in order. */
  steps(flow: string): readonly string[];
  run(step: string, ctx: SubjectStepContext<S>): Promise<string>;
  /** In the transaction that records `step` as running. */
  started(tx: EntityManager, subject: S, node: Node, flow: string, step: string): Promise<void>;
  /** In the transaction that records the flow's last step as done (the subject may be gone: a release). */
  ended(tx: EntityManager, subject: S, node: Node, flow: string, step: string): Promise<void>;
  /** Leaves the node safe after a failure; says what could not be done. */
  makeSafe(subject: S, node: Node, cause: unknown): Promise<string[]>;
  /** In the transaction that records the failure (`reason` includes the safety problems). */
  failed(
    tx: EntityManager,
    subject: S,
    node: Node | undefined,
    flow: string,
    step: string,
    reason: string,
  ): Promise<void>;
}

/**
 * The conductor of bare-metal flows: it finds subjects (instances,
 * captures) with a flow to run, takes a lease on each in the database so
 * that no two controllers drive one node, and runs the flow's steps in
 * order. Each step is recorded before it runs and after it ends, so a
 * controller that died anywhere resumes at the step it was in (its own
 * leases at once on restart, another controller's once they expire). A
 * failed step leaves the node safe and records the reason.
 */
export class Provisioner {
  readonly #d: {
    db: Database;
    log: Logger;
    bus: FlowBus;
    owner: string;
    leaseMs: number;
    scanIntervalMs: number;
  };
  readonly #definitions: FlowDefinition<FlowSubject>[];
  readonly #log: Logger;
  readonly #running = new Map<string, Promise<void>>();
  readonly #stopping = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #scanning: Promise<void> | undefined;
  #scanAgain = false;

  constructor(
    deps: { db: Database; log: Logger; bus: FlowBus; owner: string; leaseMs: number; scanIntervalMs: number },
    // biome-ignore lint/suspicious/noExplicitAny: each definition is typed by its own subject
    definitions: FlowDefinition<any>[],
  ) {
    this.#d = deps;
    this.#definitions = definitions;
    this.#log = deps.log.child({ component: 'provisioner' });
  }

  start(): void {
    this.kick();
    this.#timer = setInterval(() => this.kick(), this.#d.scanIntervalMs);
    this.#timer.unref();
  }

  /** Looks for flows to drive now (after a boot, delete or capture request). */
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
    for (const def of this.#definitions) {
      await this.#db().nativeUpdate(
        def.entity,
        { leaseOwner: this.#d.owner } as never,
        {
          leaseOwner: null,
          leaseExpiresAt: null,
        } as never,
      );
    }
  }

  #db(): EntityManager {
    return this.#d.db.fork();
  }

  /** Rows with a flow that nobody else holds a live lease on. */
  #claimable(now: Date): Record<string, unknown> {
    return {
      flow: { $ne: null },
      $or: [{ leaseOwner: null }, { leaseOwner: this.#d.owner }, { leaseExpiresAt: { $lt: now } }],
    };
  }

  async #scan(): Promise<void> {
    for (const def of this.#definitions) {
      const candidates = await this.#db().find(def.entity, this.#claimable(new Date()) as never, {
        fields: ['id'] as never,
        orderBy: { createdAt: 'asc' } as never,
      });
      for (const { id } of candidates) {
        if (this.#running.has(id) || this.#stopping.signal.aborted) continue;
        if (await this.#takeLease(def, id)) this.#launch(def, id);
      }
    }
  }

  async #takeLease(def: FlowDefinition<FlowSubject>, id: string): Promise<boolean> {
    const now = new Date();
    const taken = await this.#db().nativeUpdate(
      def.entity,
      { id, ...this.#claimable(now) } as never,
      { leaseOwner: this.#d.owner, leaseExpiresAt: new Date(now.getTime() + this.#d.leaseMs) } as never,
    );
    return taken === 1;
  }

  async #renewLease(def: FlowDefinition<FlowSubject>, id: string): Promise<boolean> {
    const renewed = await this.#db().nativeUpdate(
      def.entity,
      { id, leaseOwner: this.#d.owner } as never,
      { leaseExpiresAt: new Date(Date.now() + this.#d.leaseMs) } as never,
    );
    return renewed === 1;
  }

  #launch(def: FlowDefinition<FlowSubject>, id: string): void {
    const lost = new AbortController();
    const signal = AbortSignal.any([this.#stopping.signal, lost.signal]);
    const renew = setInterval(() => {
      this.#renewLease(def, id)
        .then((held) => {
          if (!held) lost.abort(new Error('another controller took the flow over'));
        })
        .catch((err: unknown) => this.#log.warn({ err, [def.name]: id }, 'could not renew the flow lease'));
    }, this.#d.leaseMs / 3);
    const run = this.#drive(def, id, signal)
      .catch((err: unknown) =>
        this.#log.error({ err, [def.name]: id }, 'flow stopped by an unexpected error'),
      )
      .finally(async () => {
        clearInterval(renew);
        if (!signal.aborted) {
          await this.#db()
            .nativeUpdate(
              def.entity,
              { id, leaseOwner: this.#d.owner } as never,
              {
                leaseOwner: null,
                leaseExpiresAt: null,
              } as never,
            )
            .catch(() => undefined);
        }
        this.#running.delete(id);
      });
    this.#running.set(id, run);
  }

  /** Runs the subject's flow step by step until it ends, fails, or this controller stops driving it. */
  async #drive(def: FlowDefinition<FlowSubject>, id: string, signal: AbortSignal): Promise<void> {
    for (;;) {
      if (signal.aborted) return;
      const em = this.#db();
      const subject = await em.findOne(def.entity, { id } as never);
      if (!subject?.flow) return;
      const flow = subject.flow;
      const steps = def.steps(flow);
      const step = steps.find((s) => s === subject.step) ?? (steps[0] as string);
      const node = await em.findOne(Node, { id: def.nodeIdOf(subject) });
      if (!node) {
        await this.#fail(
          def,
          subject,
          undefined,
          flow,
          step,
          new FlowError('the node is gone from the inventory'),
        );
        return;
      }
      const record = await this.#begin(def, subject, node, flow, step);
      const started = Date.now();
      let message: string;
      try {
        message = await def.run(step, {
          subject,
          node,
          flow,
          signal,
          note: (text) => this.#note(record, text),
        });
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof FlowChangedError) continue;
        await this.#fail(def, subject, node, flow, step, err, record);
        return;
      }
      const next = steps[steps.indexOf(step) + 1];
      await this.#end(def, subject, node, flow, step, next, record, message, Date.now() - started);
      if (!next) return;
    }
  }

  /** Records the step as running (a step left running by a dead controller is taken over) and the states it implies. */
  async #begin(
    def: FlowDefinition<FlowSubject>,
    subject: FlowSubject,
    node: Node,
    flow: string,
    step: string,
  ): Promise<string> {
    const recordId = await this.#db().transactional(async (tx) => {
      const open = await tx.findOne(FlowStep, { subjectId: subject.id, flow, name: step, state: 'running' });
      let rowId: string;
      if (open) {
        open.owner = this.#d.owner;
        open.message = 'resumed after the controller driving it stopped';
        rowId = open.id;
      } else {
        rowId = tx.create(FlowStep, {
          subjectId: subject.id,
          flow,
          name: step,
          state: 'running',
          startTime: new Date(),
          endTime: null,
          message: '',
          owner: this.#d.owner,
        }).id;
      }
      await def.started(tx, subject, node, flow, step);
      return rowId;
    });
    this.#log.info({ [def.name]: subject.id, node: node.name, flow, step }, 'step started');
    this.#d.bus.publish(subject.id, { kind: 'changed' });
    return recordId;
  }

  async #note(recordId: string, message: string): Promise<void> {
    await this.#db().nativeUpdate(FlowStep, { id: recordId }, { message });
  }

  async #end(
    def: FlowDefinition<FlowSubject>,
    subject: FlowSubject,
    node: Node,
    flow: string,
    step: string,
    next: string | undefined,
    recordId: string,
    message: string,
    durationMs: number,
  ): Promise<void> {
    await this.#db().transactional(async (tx) => {
      await tx.nativeUpdate(FlowStep, { id: recordId }, { state: 'done', endTime: new Date(), message });
      if (next) {
        await tx.nativeUpdate(def.entity, { id: subject.id, flow, step } as never, { step: next } as never);
      } else {
        await def.ended(tx, subject, node, flow, step);
      }
    });
    this.#log.info({ [def.name]: subject.id, node: node.name, flow, step, durationMs, message }, 'step done');
    if (!next) this.#log.info({ [def.name]: subject.id, node: node.name, flow }, 'flow done');
    this.#d.bus.publish(subject.id, { kind: 'changed' });
  }

  /** Leaves the node safe, then records the failure with an actionable reason. */
  async #fail(
    def: FlowDefinition<FlowSubject>,
    subject: FlowSubject,
    node: Node | undefined,
    flow: string,
    step: string,
    err: unknown,
    recordId?: string,
  ): Promise<void> {
    const reason = `${step}: ${describeFailure(err)}`;
    this.#log.error({ [def.name]: subject.id, node: node?.name, flow, step, err }, 'flow failed');
    const safety = node ? await def.makeSafe(subject, node, err) : [];
    const full = safety.length > 0 ? `${reason} (${safety.join('; ')})` : reason;
    await this.#db().transactional(async (tx) => {
      if (recordId) {
        await tx.nativeUpdate(
          FlowStep,
          { id: recordId },
          { state: 'failed', endTime: new Date(), message: full },
        );
      }
      await def.failed(tx, subject, node, flow, step, full);
    });
    this.#d.bus.publish(subject.id, { kind: 'changed' });
  }
}
