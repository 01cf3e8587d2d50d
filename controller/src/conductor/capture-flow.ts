import type { EntityManager } from '@mikro-orm/sql';
import type { Caller } from '../api/auth.ts';
import { CAPTURE_STEPS, type CaptureStepName } from '../domain/flows.ts';
import { isFinished } from '../domain/tasks.ts';
import type { ImageCaptures } from '../images/image-captures.ts';
import { Capture } from '../store/entities/capture.ts';
import { Image } from '../store/entities/image.ts';
import { Node } from '../store/entities/node.ts';
import { Task } from '../store/entities/task.ts';
import type { Database } from '../store/orm.ts';
import { FlowError, type FlowSteps } from './flow-steps.ts';
import type { FlowDefinition, SubjectStepContext } from './provisioner.ts';
import { Wakeup } from './wakeup.ts';

/** Captures are admins' work: the flow acts with an admin's rights. */
const CONDUCTOR: Caller = { tokenId: '', role: 'admin' };
/** How long the image store may take to check the received bytes once the agent is done. @default 5 min */
const IMAGE_CHECK_MS = 5 * 60_000;
const IMAGE_POLL_MS = 500;
/**
 * How long an earlier attempt's receiver may take to let go of its image
 * (it KILLs it once it sees its task end, within seconds) before the image
 * is taken as lost with a controller that stopped. @default 30 s
 */
const RELEASE_WAIT_MS = 30_000;
/**
 * Into the store, an agent that restarted is sent its running task again,
 * whose port already took its one connection: a new task cures that.
 */
const PORT_GONE: ReadonlySet<string> = new Set(['RECEIVER_UNREACHABLE']);

type Deps = { db: Database; steps: FlowSteps; captures: ImageCaptures };

/**
 * The capture flow for the conductor: the node is netbooted on the service
 * network, its agent streams the disk (read-only) to the image store's
 * capture port or to the operator's receiver, and the node is put back as
 * it was — its port on its network, powered as it was (or off when asked),
 * its provision state. A failure also puts the node back, powered off.
 */
export function captureFlow(deps: Deps): FlowDefinition<Capture> {
  const { steps } = deps;
  const run = (step: CaptureStepName, ctx: SubjectStepContext<Capture>): Promise<string> => {
    const { subject: capture, node, signal } = ctx;
    switch (step) {
      case 'service-network':
        return steps.serviceNetwork(node);
      case 'netboot':
        return steps.netboot(node);
      case 'capture-task':
        return createTask(deps, capture, node, signal);
      case 'power-on':
        return steps.powerOnPxe(node, signal);
      case 'capturing':
        return waitForCapture(deps, ctx);
      case 'restore-network':
        return restoreNetwork(deps, capture, node);
      case 'restore-power':
        return capture.powerOff || capture.priorPower !== 'on'
          ? steps.powerOff(node, signal)
          : steps.bootDisk(node, signal);
      case 'netboot-cleanup':
        return steps.netbootCleanup(node);
    }
  };
  return {
    name: 'capture',
    entity: Capture,
    nodeIdOf: (capture) => capture.nodeId,
    steps: () => CAPTURE_STEPS,
    run: (step, ctx) => run(step as CaptureStepName, ctx),
    async started(tx, capture, node, _flow, step) {
      await tx.nativeUpdate(Capture, { id: capture.id, flow: 'capture' }, { step, reason: '' });
      await tx.nativeUpdate(Node, { id: node.id }, { provisionState: 'capturing' });
    },
    async ended(tx, capture, node, _flow, step) {
      const done = await tx.nativeUpdate(
        Capture,
        { id: capture.id, flow: 'capture', step },
        { state: 'succeeded', flow: null, reason: '' },
      );
      if (done === 1) {
        await tx.nativeUpdate(
          Node,
          { id: node.id },
          { provisionState: capture.priorProvisionState, lastError: '' },
        );
      }
    },
    makeSafe: (capture, node, cause) => steps.makeNodeSafe(node, cause, capture.priorNetworkId),
    async failed(tx, capture, node, _flow, step, reason) {
      await tx.nativeUpdate(
        Capture,
        { id: capture.id, flow: 'capture' },
        { state: 'failed', reason, flow: null, step, leaseOwner: null, leaseExpiresAt: null },
      );
      // The disk was only read: the node goes back to what it was, its last error saying what happened.
      if (node) {
        await tx.nativeUpdate(
          Node,
          { id: node.id },
          { provisionState: capture.priorProvisionState, lastError: `capture ${capture.id}: ${reason}` },
        );
      }
    },
  };
}

/** The capture-task step: the agent's task, into the image store's capture port or to the operator's receiver. */
async function createTask(deps: Deps, capture: Capture, node: Node, signal: AbortSignal): Promise<string> {
  const { taskId, created } = await ensureTask(deps, capture, node, signal, { replace: false });
  const destination = capture.imageId ? 'the image store' : capture.spec.receiver;
  return `capture task ${taskId} ${created ? 'queued' : 'already queued'}: ${capture.spec.disk} → ${destination}`;
}

/**
 * The capture's agent task. One is created when there is none, or (into
 * the store) when the one there is waits on a capture port that died with
 * the controller that opened it: this one restarted, or took the flow over.
 * `replace` creates one whatever there is. Run again after a crash, it finds
 * its work done.
 */
async function ensureTask(
  deps: Deps,
  capture: Capture,
  node: Node,
  signal: AbortSignal,
  opts: { replace: boolean },
): Promise<{ taskId: string; created: boolean }> {
  const em = deps.db.fork();
  const { taskId } = await em.findOneOrFail(Capture, { id: capture.id }, { fields: ['taskId'] });
  const current = taskId ? await em.findOne(Task, { id: taskId }) : null;
  if (current && !opts.replace) {
    const portAlive = !capture.imageId || deps.captures.isReceiving(capture.imageId);
    if (isFinished(current.state) || portAlive) return { taskId: current.id, created: false };
  }
  await deps.steps.cancelUnfinished(node.id);
  if (capture.imageId) await releaseImage(deps, capture.imageId, signal);
  const created = await deps.db.fork().transactional(async (tx) => {
    const id = await queueTask(deps, tx, capture, node);
    await tx.nativeUpdate(Capture, { id: capture.id }, { taskId: id });
    return id;
  });
  capture.taskId = created;
  return { taskId: created, created: true };
}

function queueTask(deps: Deps, tx: EntityManager, capture: Capture, node: Node): Promise<string> {
  const spec = { ...capture.spec, image: capture.imageId ?? '' };
  return deps.captures.createTask(tx, CONDUCTOR, node.id, spec).then((task) => task.id);
}

/**
 * Frees the image of an earlier attempt so that a new one may claim it: a
 * receiver in this controller is stopped at once; one in another controller
 * lets go (KILLs the image) once it sees its task end; one that died with
 * its controller never will, so after RELEASE_WAIT_MS the image is KILLED
 * here.
 */
async function releaseImage(deps: Deps, imageId: string, signal: AbortSignal): Promise<void> {
  // The attempt being replaced is over (its task cancelled, its node about to be reset): its
  // receiver here, if any, stops now instead of waiting for a stream that will never end.
  await deps.captures.abandon(imageId, 'the capture started over: see its steps');
  const wakeup = new Wakeup();
  const deadline = Date.now() + RELEASE_WAIT_MS;
  // A receiver in this process is alive however long it takes: only a dead one's image is KILLED here.
  while (Date.now() < deadline || deps.captures.isReceiving(imageId)) {
    signal.throwIfAborted();
    const image = await deps.db.fork().findOne(Image, { id: imageId }, { fields: ['status'] });
    if (image?.status !== 'saving') return;
    await wakeup.pause(IMAGE_POLL_MS, signal);
  }
  signal.throwIfAborted();
  await deps.db.fork().nativeUpdate(
    Image,
    { id: imageId, status: 'saving' },
    {
      status: 'killed',
      statusReason: 'the controller receiving an earlier attempt of this capture stopped; capturing again',
      updatedAt: new Date(),
    },
  );
}

/**
 * The capturing step: waits for the agent's capture, then (into the store)
 * for the image store's check of what arrived. Bytes lost with a controller
 * that stopped before checking them are captured again, once.
 */
async function waitForCapture(deps: Deps, ctx: SubjectStepContext<Capture>): Promise<string> {
  const { subject: capture, node, signal } = ctx;
  const imageId = capture.imageId;
  for (let attempt = 0; ; attempt++) {
    await ensureTask(deps, capture, node, signal, { replace: attempt > 0 });
    const message = await deps.steps.waitForTask({
      entity: Capture,
      subjectId: capture.id,
      flow: 'capture',
      node,
      signal,
      note: ctx.note,
      // Into the store, a retry needs a new task: the old one's port took its one connection.
      ...(imageId
        ? {
            newTaskOnRetry: true,
            alsoRetryable: PORT_GONE,
            beforeRequeue: async () => {
              await deps.steps.cancelUnfinished(node.id);
              await releaseImage(deps, imageId, signal);
            },
          }
        : {}),
      requeue: (tx) => queueTask(deps, tx, capture, node),
      done: (task) => {
        const o = task.outcome;
        const unreadable = o?.unreadable?.length ?? 0;
        return `${o?.bytesRead || o?.bytesSent || 0} bytes read, ${o?.bytesSent ?? 0} sent, sha256 ${o?.sha256 ?? ''}${unreadable > 0 ? `, ${unreadable} unreadable range(s) sent as zeros` : ''}`;
      },
    });
    const em = deps.db.fork();
    const { taskId } = await em.findOneOrFail(Capture, { id: capture.id }, { fields: ['taskId'] });
    const task = taskId ? await em.findOne(Task, { id: taskId }) : null;
    await em.nativeUpdate(Capture, { id: capture.id }, { outcome: task?.outcome ?? null });
    if (!capture.imageId) return message;
    const image = await imageChecked(deps, capture.imageId, signal);
    if (image) return `${message}; image ${image.name} active (${image.sizeBytes} bytes stored)`;
    if (attempt > 0) {
      throw new FlowError('the bytes were lost twice with the controller receiving them; capture again');
    }
    await ctx.note('the controller receiving the bytes stopped before checking them; capturing again');
  }
}

/**
 * The image once the store has checked the received bytes: ACTIVE, or
 * FlowError with why it is not; undefined when the bytes were lost with a
 * controller that stopped before checking them.
 */
async function imageChecked(deps: Deps, imageId: string, signal: AbortSignal): Promise<Image | undefined> {
  const wakeup = new Wakeup();
  const deadline = Date.now() + IMAGE_CHECK_MS;
  let orphanedSince: number | undefined;
  for (;;) {
    signal.throwIfAborted();
    const image = await deps.db.fork().findOne(Image, { id: imageId });
    if (!image) throw new FlowError('the image was deleted during the capture');
    if (image.status === 'active') return image;
    if (image.status === 'killed' || image.status === 'queued') {
      throw new FlowError(`the image store refused the capture: ${image.statusReason || image.status}`);
    }
    // SAVING with nobody here receiving it: another controller may still be checking it, or died doing so.
    orphanedSince = deps.captures.isReceiving(imageId) ? undefined : (orphanedSince ?? Date.now());
    if (orphanedSince !== undefined && Date.now() - orphanedSince > RELEASE_WAIT_MS) return undefined;
    if (Date.now() > deadline) {
      throw new FlowError(
        `the image store did not finish checking the capture within ${IMAGE_CHECK_MS / 1000} s; look at the controller's log`,
      );
    }
    await wakeup.pause(IMAGE_POLL_MS, signal);
  }
}

async function restoreNetwork(deps: { steps: FlowSteps }, capture: Capture, node: Node): Promise<string> {
  if (!node.switchId) return 'the node has no switch port: network steps skipped';
  if (!capture.priorNetworkId) return 'the port was on no network before: it stays on the service network';
  return deps.steps.setNetwork(node, capture.priorNetworkId);
}
