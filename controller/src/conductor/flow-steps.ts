import type { EntityManager } from '@mikro-orm/sql';
import type { ProvisioningSettings } from '../config/config.ts';
import { type FlowKind, RETRYABLE_TASK_ERRORS, type StepName } from '../domain/flows.ts';
import { isFinished, type TaskKind, type TaskSpecBody } from '../domain/tasks.ts';
import type { Netboot } from '../drivers/netboot/netboot.ts';
import { SwitchError } from '../drivers/network/errors.ts';
import { BmcError } from '../drivers/power/errors.ts';
import type { BootDevice } from '../drivers/power/power-driver.ts';
import type { PowerManager } from '../drivers/power/power-manager.ts';
import { type PowerNode, powerNodeOf } from '../drivers/power/registry.ts';
import type { Logger } from '../log/logger.ts';
import { AgentToken } from '../store/entities/agent.ts';
import type { Capture } from '../store/entities/capture.ts';
import { FlowStep } from '../store/entities/flow-step.ts';
import { Image } from '../store/entities/image.ts';
import { Instance } from '../store/entities/instance.ts';
import { Node } from '../store/entities/node.ts';
import { Task } from '../store/entities/task.ts';
import type { Database } from '../store/orm.ts';
import type { SecretBox } from '../store/secrets.ts';
import type { AgentSessions } from './agent-sessions.ts';
import type { FlowBus } from './flow-bus.ts';
import type { Placement } from './placement.ts';
import type { PortFlipper } from './port-flips.ts';
import { recordExpectedPowerState, recordPowerState } from './power-sync.ts';
import type { TaskQueue } from './task-queue.ts';
import { Wakeup } from './wakeup.ts';

/** The agent token on a node's kernel command line lives this long; it is revoked once the flow is done. */
const AGENT_TOKEN_TTL_MS = 24 * 3600_000;
/** How long a failed flow's power-off may take before the node is left as it is. */
const SAFE_POWER_OFF_MS = 60_000;
/** How often a waiting step looks at its task and subject when no event wakes it. */
const WAIT_POLL_MS = 1_000;

/** A step failed in a way an operator must act on; the message says how. */
export class FlowError extends Error {}

/** A failure as one line for an operator (errors from drivers and steps already say what to do). */
export function describeFailure(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The subject's flow changed under a running step (a delete arrived during a deploy). */
export class FlowChangedError extends Error {}

export interface FlowStepsDeps {
  db: Database;
  log: Logger;
  settings: ProvisioningSettings;
  secrets: SecretBox;
  power: PowerManager;
  network: PortFlipper;
  netboot: Netboot | undefined;
  tasks: TaskQueue;
  agents: AgentSessions;
  placement: Placement;
  bus: FlowBus;
}

/** What a step works on. `instance` and `node` are as read just before the step started. */
export interface StepContext {
  instance: Instance;
  node: Node;
  flow: FlowKind;
  signal: AbortSignal;
  /** Notes a retry on the running step's record (its message). */
  note(message: string): Promise<void>;
}

/** A flow's subject waiting for its node's agent task (an instance's deploy or wipe, a capture). */
export interface TaskWait {
  /** The subject's table: its rows have `flow`, `taskId` and `retries`. */
  entity: typeof Instance | typeof Capture;
  subjectId: string;
  flow: string;
  node: Node;
  signal: AbortSignal;
  note(message: string): Promise<void>;
  /** Before `requeue`, outside its transaction: e.g. waiting for the failed attempt to let go of what it held. */
  beforeRequeue?(): Promise<void>;
  /** Queues the task anew after a failure a retry may cure; returns the new task's id. */
  requeue(tx: EntityManager, kind: TaskKind): Promise<string>;
  /**
   * Every retry gets a new task, also after a stall or an agent that never
   * called in (whose task would otherwise be sent again as it is): a
   * capture's port takes one connection. @default false
   */
  newTaskOnRetry?: boolean;
  /** Task failures this subject's retry may cure besides RETRYABLE_TASK_ERRORS. */
  alsoRetryable?: ReadonlySet<string>;
  /** The step's record line once the task succeeded. */
  done(task: Task): string;
}

/**
 * The steps of the deploy and delete flows, and the node steps other flows
 * (a capture) are made of: network moves, netboot, power, waiting for an
 * agent task. Each is idempotent: run again after a crash, it finds its work
 * done or does it again harmlessly. A step returns a line for its record,
 * throws FlowError with what an operator must do, or FlowChangedError when a
 * delete replaced the flow it belongs to.
 */
export class FlowSteps {
  readonly #d: FlowStepsDeps;

  constructor(deps: FlowStepsDeps) {
    this.#d = deps;
  }

  run(step: StepName, ctx: StepContext): Promise<string> {
    switch (step) {
      case 'service-network':
        return this.#serviceNetwork(ctx);
      case 'netboot':
        return this.netboot(ctx.node);
      case 'deploy-task':
        return this.#createTask(ctx, 'deploy');
      case 'wipe-task':
        return this.#createTask(ctx, 'wipe');
      case 'power-on':
        return this.powerOnPxe(ctx.node, ctx.signal);
      case 'deploying':
      case 'wiping':
        return this.#waitForInstanceTask(ctx);
      case 'tenant-network':
        return this.#tenantNetwork(ctx);
      case 'boot-disk':
        return this.bootDisk(ctx.node, ctx.signal);
      case 'netboot-cleanup':
        return this.netbootCleanup(ctx.node);
      case 'cancel-deploy':
        return this.#cancelTasks(ctx);
      case 'power-off':
        return this.powerOff(ctx.node, ctx.signal);
      case 'release':
        return this.#release(ctx);
    }
  }

  /** Cancels the node's unfinished tasks (best effort); how many. */
  async cancelUnfinished(nodeId: string): Promise<number> {
    const em = this.#d.db.fork();
    const open = await em.find(Task, { nodeId, state: { $in: ['queued', 'running'] } });
    for (const task of open) {
      if (!task.cancelRequested) await this.#d.tasks.cancel(em, task);
    }
    return open.length;
  }

  async #serviceNetwork({ instance, node, flow }: StepContext): Promise<string> {
    if (flow === 'deploy' && !instance.networkId) {
      throw new FlowError(
        'the instance has no project network; create one for the project (bmctl network create), then delete this instance and boot again',
      );
    }
    return this.serviceNetwork(node);
  }

  /** Moves the node's port to the service network (nodes without a switch port skip it). */
  async serviceNetwork(node: Node): Promise<string> {
    if (!node.switchId) return 'the node has no switch port: network steps skipped';
    const moved = await this.#d.network.moveToServiceNetwork(node.id);
    return moved.changed
      ? `port ${moved.switchPort} moved to ${moved.networkName}`
      : `port ${moved.switchPort} already on ${moved.networkName}`;
  }

  /** A fresh agent token, the node's DHCP entry and boot files. */
  async netboot(node: Node): Promise<string> {
    const netboot = this.#requireNetboot();
    const { token } = await this.#d.agents.mintToken(this.#d.db.fork(), node.id, AGENT_TOKEN_TTL_MS);
    await netboot.prepare({
      nodeId: node.id,
      nodeName: node.name,
      mac: node.mac,
      ip: node.ip,
      agentToken: token,
    });
    return `DHCP entry and boot files for ${node.mac} (${node.ip})`;
  }

  async #createTask({ instance, node }: StepContext, kind: 'deploy' | 'wipe'): Promise<string> {
    const em = this.#d.db.fork();
    if (instance.taskId) {
      const existing = await em.findOne(Task, { id: instance.taskId });
      if (existing?.kind === kind && !isFinished(existing.state)) return `task ${existing.id} already queued`;
    }
    const task = await em.transactional(async (tx) => {
      const spec = await this.#taskSpec(tx, instance, node, kind);
      const created = await this.#d.tasks.create(tx, { nodeId: node.id, kind, ...spec });
      await tx.nativeUpdate(Instance, { id: instance.id }, { taskId: created.id });
      return created;
    });
    instance.taskId = task.id;
    return `${kind} task ${task.id} queued for ${node.rootDisk}`;
  }

  async #taskSpec(
    em: EntityManager,
    instance: Instance,
    node: Node,
    kind: 'deploy' | 'wipe',
  ): Promise<{ spec: TaskSpecBody; imageId?: string }> {
    if (kind === 'wipe') return { spec: { wipe: { disk: node.rootDisk, full: instance.wipeFull } } };
    const image = instance.imageId ? await em.findOne(Image, { id: instance.imageId }) : null;
    if (image?.status !== 'active') {
      throw new FlowError(
        `image ${instance.image} is ${image ? image.status : 'gone'}; upload it again, then delete this instance and boot again`,
      );
    }
    return {
      spec: { deploy: { image: image.id, disk: node.rootDisk, sha256: image.sha256 } },
      imageId: image.id,
    };
  }

  /** Boots the node from the network: boot device PXE, then a power reset. */
  async powerOnPxe(node: Node, signal: AbortSignal): Promise<string> {
    await this.#power(node, 'pxe', 'reset', signal);
    return 'boot device pxe, power reset';
  }

  /** Boots the node from its disk: boot device disk, then a power reset. */
  async bootDisk(node: Node, signal: AbortSignal): Promise<string> {
    await this.#power(node, 'disk', 'reset', signal);
    return 'boot device disk, power reset';
  }

  /** Powers the node off and records it; also used to leave a failed node safe. */
  async powerOff(node: Node, signal: AbortSignal): Promise<string> {
    const target = this.#powerNode(node);
    const em = this.#d.db.fork();
    await recordExpectedPowerState(em, node.id, 'off');
    const change = await this.#d.power.setPower(target, 'off', { signal });
    await recordPowerState(em, node.id, change.state, new Date());
    return change.sent.length > 0 ? 'powered off' : 'already off';
  }

  /** Sets the boot device, then power; the node's expected and observed power are recorded. */
  async #power(node: Node, device: BootDevice, command: 'reset', signal: AbortSignal): Promise<void> {
    const target = this.#powerNode(node);
    const em = this.#d.db.fork();
    await this.#d.power.setBootDevice(target, device, { persistent: false, uefi: false, signal });
    await recordExpectedPowerState(em, node.id, 'on');
    const change = await this.#d.power.setPower(target, command, { signal });
    await recordPowerState(em, node.id, change.state, new Date());
  }

  #powerNode(node: Node): PowerNode {
    return powerNodeOf(node, this.#d.secrets);
  }

  /** Waits for the instance's deploy or wipe task (see waitForTask). */
  #waitForInstanceTask(ctx: StepContext): Promise<string> {
    const { instance, node } = ctx;
    return this.waitForTask({
      entity: Instance,
      subjectId: instance.id,
      flow: ctx.flow,
      node,
      signal: ctx.signal,
      note: ctx.note,
      requeue: async (tx, kind) => {
        const spec = await this.#taskSpec(tx, instance, node, kind === 'deploy' ? 'deploy' : 'wipe');
        return (await this.#d.tasks.create(tx, { nodeId: node.id, kind, ...spec })).id;
      },
      done: (task) =>
        task.kind === 'deploy'
          ? `image written: ${task.outcome?.bytesWritten ?? 0} bytes, sha256 ${task.outcome?.sha256 ?? ''}`
          : `disk ${node.rootDisk} wiped${instance.wipeFull ? ' (every byte)' : ''}`,
    });
  }

  /**
   * Waits for the subject's task to succeed, forwarding its progress to the
   * subject's watchers. The agent not taking it in time, no progress for
   * too long, or a failure a new attempt may cure cost a power cycle each,
   * up to the configured number; then FlowError.
   */
  async waitForTask(w: TaskWait): Promise<string> {
    const { node, signal } = w;
    const s = this.#d.settings;
    let since = Date.now();
    /** Why this wait power-cycled the node, for the step's record. */
    const cycles: string[] = [];
    let forwarded: (() => void) | undefined;
    let forwardedTask = '';
    const wakeup = new Wakeup();
    try {
      for (;;) {
        signal.throwIfAborted();
        const em = this.#d.db.fork();
        const current = (await em.findOne(
          w.entity as typeof Instance,
          { id: w.subjectId },
          {
            fields: ['flow', 'taskId', 'retries'],
          },
        )) as { flow: string | null; taskId: string | null; retries: number } | null;
        if (current?.flow !== w.flow) throw new FlowChangedError();
        const task = current.taskId ? await em.findOne(Task, { id: current.taskId }) : null;
        if (!task) throw new FlowError('the flow lost its agent task; start it again');
        if (forwardedTask !== task.id) {
          forwarded?.();
          forwardedTask = task.id;
          // Progress reports reach the subject's watchers as they arrive; only a change of the
          // task's state wakes this wait (reading the database on every report would load it for nothing).
          forwarded = this.#d.tasks.bus.watchTask(task.id, (event) => {
            if (event.kind === 'progress') this.#d.bus.publish(w.subjectId, event);
            else wakeup.wake();
          });
        }
        const now = Date.now();
        let trouble: string | undefined;
        let newTask = false;
        if (task.state === 'succeeded') {
          const done = w.done(task);
          return cycles.length > 0 ? `${done}; after power cycles for: ${cycles.join('; ')}` : done;
        }
        if (task.state === 'failed' || task.state === 'cancelled') {
          const err = task.error;
          const told = `the agent's ${task.kind} failed: ${err?.reason ?? 'UNKNOWN'}: ${err?.message ?? ''}`;
          const retryable =
            err && (RETRYABLE_TASK_ERRORS.has(err.reason) || w.alsoRetryable?.has(err.reason));
          if (!retryable) throw new FlowError(told);
          trouble = told;
          newTask = true;
        } else if (task.state === 'queued' && now - since > s.agentTimeoutMs) {
          const got = await this.#netbootState(em, node.id);
          trouble = `the agent did not call in within ${Math.round(s.agentTimeoutMs / 1000)} s of the power-on (netboot: ${got})`;
        } else if (task.state === 'running') {
          const last = Math.max(since, task.updatedAt.getTime());
          if (now - last > s.stallTimeoutMs) {
            const done = task.progress?.bytesDone ?? 0;
            trouble = `no progress for ${Math.round(s.stallTimeoutMs / 1000)} s (at ${done} bytes)`;
          }
        }
        if (trouble) {
          await this.#retry(w, current.retries, trouble, newTask || w.newTaskOnRetry ? task.kind : undefined);
          cycles.push(trouble);
          since = Date.now();
          continue;
        }
        await wakeup.pause(WAIT_POLL_MS, signal);
      }
    } finally {
      forwarded?.();
    }
  }

  /** One power cycle more, or FlowError when the flow has spent them all. */
  async #retry(w: TaskWait, retries: number, trouble: string, newTask: TaskKind | undefined): Promise<void> {
    const allowed = this.#d.settings.powerCycles;
    if (retries >= allowed) {
      throw new FlowError(
        `${trouble}; gave up after ${allowed} power cycle${allowed === 1 ? '' : 's'}. Check the node's console and BMC${w.entity === Instance ? ', then delete the instance' : ''}`,
      );
    }
    const { node } = w;
    this.#d.log.warn(
      { subject: w.subjectId, node: node.name, retry: retries + 1, trouble },
      'power-cycling the node',
    );
    if (newTask) await w.beforeRequeue?.();
    const em = this.#d.db.fork();
    await em.transactional(async (tx) => {
      const updates: { retries: number; taskId?: string } = { retries: retries + 1 };
      if (newTask) updates.taskId = await w.requeue(tx, newTask);
      await tx.nativeUpdate(w.entity as typeof Instance, { id: w.subjectId }, updates);
    });
    await w.note(`power cycle ${retries + 1} of ${allowed}: ${trouble}`);
    await this.#power(node, 'pxe', 'reset', w.signal);
  }

  async #netbootState(em: EntityManager, nodeId: string): Promise<string> {
    const row = (
      await em.execute<{ netboot_state: string | null }[]>('select netboot_state from node where id = ?', [
        nodeId,
      ])
    )[0];
    return row?.netboot_state
      ? ({
          pending: 'no DHCP request seen',
          leased: 'DHCP lease taken, boot configuration never fetched',
          fetched: 'boot configuration fetched, the agent never connected',
        }[row.netboot_state] ?? row.netboot_state)
      : 'no entry';
  }

  #tenantNetwork({ instance, node }: StepContext): Promise<string> {
    return this.setNetwork(node, instance.networkId ?? '');
  }

  /** Moves the node's port to a network (nodes without a switch port skip it). */
  async setNetwork(node: Node, networkId: string): Promise<string> {
    if (!node.switchId) return 'the node has no switch port: network steps skipped';
    const moved = await this.#d.network.setNodeNetwork(node.id, networkId);
    return `port ${moved.switchPort} ${moved.changed ? 'moved to' : 'already on'} ${moved.networkName}`;
  }

  async netbootCleanup(node: Node): Promise<string> {
    await this.#requireNetboot().remove({ nodeId: node.id, mac: node.mac });
    // The token was on the kernel command line, readable on the service network: revoke it.
    await this.#d.db.fork().nativeDelete(AgentToken, { nodeId: node.id });
    return 'DHCP entry and boot files removed, agent token revoked';
  }

  async #cancelTasks({ node }: StepContext): Promise<string> {
    const cancelled = await this.cancelUnfinished(node.id);
    return cancelled > 0 ? `${cancelled} unfinished task(s) cancelled` : 'nothing to cancel';
  }

  async #release({ instance, node }: StepContext): Promise<string> {
    const em = this.#d.db.fork();
    await em.nativeUpdate(Node, { id: node.id }, { provisionState: 'available', lastError: '' });
    await em.nativeDelete(FlowStep, { subjectId: instance.id });
    await this.#d.placement.release(em, instance);
    return 'node available';
  }

  /**
   * Leaves a node safe after a failed flow, each part on its own, best
   * effort: its tasks cancelled, no netboot entry, its port on the service
   * network (or on `network` when given; where it was when the switch
   * refused), powered off unless its BMC is what failed. Returns what could
   * not be done.
   */
  async makeNodeSafe(node: Node, cause: unknown, network?: string | null): Promise<string[]> {
    const problems: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        problems.push(`could not ${what}: ${describeFailure(err)}`);
      }
    };
    await attempt('cancel the agent tasks', () => this.cancelUnfinished(node.id));
    if (this.#d.netboot) {
      const netboot = this.#d.netboot;
      await attempt('remove the netboot entry', () => netboot.remove({ nodeId: node.id, mac: node.mac }));
    }
    if (node.switchId && !(cause instanceof SwitchError)) {
      if (network) {
        await attempt('move the port back to its network', () =>
          this.#d.network.setNodeNetwork(node.id, network),
        );
      } else {
        await attempt('move the port to the service network', () =>
          this.#d.network.moveToServiceNetwork(node.id),
        );
      }
    }
    if (!(cause instanceof BmcError)) {
      await attempt('power the node off', () => this.powerOff(node, AbortSignal.timeout(SAFE_POWER_OFF_MS)));
    } else {
      problems.push('the node could not be powered off: its BMC failed');
    }
    return problems;
  }

  #requireNetboot(): Netboot {
    if (!this.#d.netboot) {
      throw new FlowError(
        'netboot is off on this controller; configure netboot (see the README), then retry',
      );
    }
    return this.#d.netboot;
  }
}
