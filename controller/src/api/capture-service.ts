import type { EntityManager } from '@mikro-orm/sql';
import * as pb from '../../../build/gen/ingot/v1/capture.ts';
import { CaptureSpec } from '../../../build/gen/ingot/v1/task.ts';
import type { FlowBus } from '../conductor/flow-bus.ts';
import type { Provisioner } from '../conductor/provisioner.ts';
import { ControllerShuttingDownError, ImageNotUploadableError } from '../domain/agent-errors.ts';
import { checkCaptureSpec } from '../domain/capture-spec.ts';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../domain/errors.ts';
import { isId } from '../domain/formats.ts';
import type { ProvisionState } from '../domain/provision-state.ts';
import { createImage, findImage } from '../images/images.ts';
import { Capture } from '../store/entities/capture.ts';
import type { Image } from '../store/entities/image.ts';
import { Node } from '../store/entities/node.ts';
import { findByRef } from '../store/resource-repository.ts';
import { ADMIN_ONLY } from './auth.ts';
import { captureToProto } from './capture-mappers.ts';
import { fromProto, OS_TYPES, VISIBILITIES } from './image-service.ts';
import { progressToProto } from './instance-mappers.ts';
import type { Handlers, Method, ServerStreamMethod } from './rpc.ts';

/** A node may be captured only when no instance and no flow uses it. */
const CAPTURABLE: ProvisionState[] = ['enroll', 'manageable', 'available'];
/** How often a watch reads the capture when no event woke it (flows another controller drives). */
const WATCH_POLL_MS = 1000;

export interface CaptureServiceDeps {
  /** Drives the flows; undefined when netboot is off (no capture can run). */
  provisioner: Provisioner | undefined;
  bus: FlowBus;
  /** Aborted when the controller shuts down: watches end. */
  closing: AbortSignal;
}

async function findCapture(em: EntityManager, ref: string): Promise<Capture> {
  const id = ref.trim();
  if (!id) throw new InvalidArgumentError([{ field: 'id', description: 'is required (a capture id)' }]);
  const capture = isId(id) ? await em.findOne(Capture, { id: id.toLowerCase() }) : null;
  if (!capture) throw new NotFoundError('capture', id);
  return capture;
}

/** CaptureService: admins capture a node's disk into an image (or to their own receiver) and follow it. */
export function captureHandlers(deps: CaptureServiceDeps): Handlers {
  const create: Method<pb.CreateCaptureRequest, pb.Capture> = {
    access: ADMIN_ONLY,
    async handle(req, { em, caller }) {
      const violations: { field: string; description: string }[] = [];
      if (!req.node.trim())
        violations.push({ field: 'node', description: 'is required (a node id or name)' });
      const given = req.spec ?? CaptureSpec.fromPartial({});
      if (given.image.trim()) {
        violations.push({ field: 'spec.image', description: 'must be empty: name the image in `image`' });
      }
      const wanted = req.image;
      const osType = wanted ? fromProto(OS_TYPES, wanted.osType, 'image.os_type', violations) : undefined;
      const visibility = wanted
        ? fromProto(VISIBILITIES, wanted.visibility, 'image.visibility', violations)
        : undefined;
      if (wanted && !wanted.id.trim() && !wanted.name.trim()) {
        violations.push({
          field: 'image.name',
          description: 'is required: the new image’s name (or `id` of an existing one)',
        });
      }
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      const node = await findByRef(em, 'node', Node, req.node);
      const spec = checkCaptureSpec({
        disk: given.disk.trim() || node.rootDisk,
        blockSizeBytes: Number(given.blockSizeBytes),
        count: Number(given.count),
        skip: Number(given.skip),
        toLastPartition: given.toLastPartition,
        strict: given.strict,
        receiver: given.receiver,
        // Checked as a destination here; the task gets the image's id once the flow creates it.
        image: wanted ? wanted.id.trim() || wanted.name.trim() : '',
        compress: given.compress,
      });
      if (!deps.provisioner) {
        throw new FailedPreconditionError(
          'NETBOOT_OFF',
          'netboot is off on this controller, so no node can be captured; configure netboot (see the README), then retry',
        );
      }
      const capture = await em.transactional(async (tx) => {
        const claimed = await tx.nativeUpdate(
          Node,
          { id: node.id, instanceId: null, provisionState: { $in: CAPTURABLE } },
          { provisionState: 'capturing', lastError: '' },
        );
        if (claimed === 0) {
          const now = await tx.findOneOrFail(Node, { id: node.id });
          throw new FailedPreconditionError(
            'NODE_BUSY',
            `node ${node.name} is ${now.provisionState}${now.instanceId ? ` and holds instance ${now.instanceId}` : ''}; a node can be captured when it is ${CAPTURABLE.join(', ')} with no instance`,
            { node: node.name, provision_state: now.provisionState },
          );
        }
        const image = wanted ? await imageToFill(tx, caller, wanted, req.project, osType, visibility) : null;
        return tx.create(Capture, {
          nodeId: node.id,
          imageId: image?.id ?? null,
          spec: { ...spec, image: '' },
          powerOff: req.powerOff,
          state: 'running',
          flow: 'capture',
          step: '',
          retries: 0,
          taskId: null,
          reason: '',
          outcome: null,
          priorNetworkId: node.networkId ?? null,
          priorPower: node.powerState ?? null,
          priorProvisionState: node.provisionState,
          leaseOwner: null,
          leaseExpiresAt: null,
        });
      });
      deps.provisioner.kick();
      return captureToProto(em.fork(), capture);
    },
  };
  const get: Method<pb.GetCaptureRequest, pb.Capture> = {
    access: ADMIN_ONLY,
    async handle(req, { em }) {
      return captureToProto(em, await findCapture(em, req.id));
    },
  };
  const watch: ServerStreamMethod<pb.WatchCaptureRequest, pb.Capture> = {
    access: ADMIN_ONLY,
    stream: 'server',
    async handle(req, { em, signal }, send) {
      const found = await findCapture(em, req.id);
      const events = deps.bus.subscribe(found.id);
      const ending = AbortSignal.any([signal, deps.closing]);
      try {
        let shown = await captureToProto(em.fork(), found);
        await send(shown);
        while (shown.state === pb.CaptureState.CAPTURE_STATE_RUNNING) {
          await events.wait(WATCH_POLL_MS, ending);
          if (signal.aborted) return;
          if (deps.closing.aborted) throw new ControllerShuttingDownError();
          const batch = events.take();
          const progress = batch.flatMap((e) => (e.kind === 'progress' ? [e.progress] : []));
          if (batch.length > 0 && progress.length === batch.length) {
            shown = { ...shown, progress: progressToProto(progress.at(-1) as (typeof progress)[number]) };
            await send(shown);
            continue;
          }
          const fresh = await captureToProto(em.fork(), await findCapture(em.fork(), found.id));
          if (JSON.stringify({ ...fresh, updateTime: 0 }) !== JSON.stringify({ ...shown, updateTime: 0 })) {
            await send(fresh);
          }
          shown = fresh;
        }
      } finally {
        events.close();
      }
    },
  };
  return { CreateCapture: create, GetCapture: get, WatchCapture: watch } as Handlers;
}

/** The image a capture fills: an existing QUEUED or KILLED one (by `id`), or a new one (by `name`). */
async function imageToFill(
  em: EntityManager,
  caller: Parameters<typeof findImage>[1],
  wanted: NonNullable<pb.CreateCaptureRequest['image']>,
  project: string,
  osType: Image['osType'] | undefined,
  visibility: Image['visibility'] | undefined,
): Promise<Image> {
  if (wanted.id.trim()) {
    const image = await findImage(em, caller, wanted.id, { write: true, field: 'image.id' });
    if (image.status !== 'queued' && image.status !== 'killed') {
      throw new ImageNotUploadableError(image.name, image.status);
    }
    return image;
  }
  return createImage(em, caller, {
    name: wanted.name,
    ...(osType ? { osType } : {}),
    ...(visibility ? { visibility } : {}),
    project,
  });
}
