import type { EntityManager } from '@mikro-orm/sql';
import type * as pb from '../../../build/gen/ingot/v1/instance.ts';
import type { FlowBus } from '../conductor/flow-bus.ts';
import type { Placement } from '../conductor/placement.ts';
import type { Provisioner } from '../conductor/provisioner.ts';
import { ControllerShuttingDownError } from '../domain/agent-errors.ts';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from '../domain/errors.ts';
import { isName, NAME_HINT } from '../domain/formats.ts';
import { findImage } from '../images/images.ts';
import { Instance } from '../store/entities/instance.ts';
import { Network } from '../store/entities/network.ts';
import type { Project } from '../store/entities/project.ts';
import { findByRef, listResources } from '../store/resource-repository.ts';
import type { Access, Caller } from './auth.ts';
import { instancesToProto, progressToProto } from './instance-mappers.ts';
import type { Handlers, Method, ServerStreamMethod } from './rpc.ts';
import { instanceWhere, resolveProject, resolveSchedulingRequest } from './scheduling-request.ts';

const MEMBERS_TOO: Access = ['admin', 'member'];
/** How often a watch reads the instance when no event woke it (flows another controller drives). */
const WATCH_POLL_MS = 1000;

export interface InstanceServiceDeps {
  placement: Placement;
  /** Drives bare-metal flows; undefined when netboot is off (instances then wait in SCHEDULED). */
  provisioner: Provisioner | undefined;
  bus: FlowBus;
  /** Aborted when the controller shuts down: watches end. */
  closing: AbortSignal;
  /** Reboots an ACTIVE bare-metal instance's node through its BMC. */
  reboot(em: EntityManager, instance: Instance, hard: boolean, signal: AbortSignal): Promise<void>;
}

async function findInstance(
  em: EntityManager,
  caller: Caller,
  ref: string,
  project: string,
): Promise<Instance> {
  const where = await instanceWhere(em, caller, ref, project);
  const instance = await em.findOne(Instance, where);
  if (!instance) throw new NotFoundError('instance', ref.trim());
  return instance;
}

async function one(em: EntityManager, instance: Instance): Promise<pb.Instance> {
  return (await instancesToProto(em, [instance]))[0] as pb.Instance;
}

/**
 * The project network a bare-metal instance goes on: the one named (it must
 * be the project's), else the project's only one; null when it has none.
 */
async function resolveNetwork(em: EntityManager, project: Project, ref: string): Promise<string | null> {
  if (ref.trim()) {
    const network = await findByRef(em, 'network', Network, ref);
    if (network.kind !== 'project' || network.projectId !== project.id) {
      throw new InvalidArgumentError([
        { field: 'network', description: `must be a network of project ${project.name}` },
      ]);
    }
    return network.id;
  }
  const owned = await em.find(
    Network,
    { projectId: project.id, kind: 'project' },
    { fields: ['id'], limit: 2 },
  );
  if (owned.length > 1) {
    throw new InvalidArgumentError([
      { field: 'network', description: `is required: project ${project.name} has several networks` },
    ]);
  }
  return owned[0]?.id ?? null;
}

/** The image in the store the instance's project would see under `ref`, if any (VM placements may name others). */
async function resolveImage(em: EntityManager, project: Project, ref: string): Promise<string | null> {
  try {
    return (await findImage(em, { role: 'member', projectId: project.id } as Caller, ref)).id;
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
}

/** InstanceService: boot (schedule + claim, then the conductor provisions), show, list, delete, reboot, watch. */
export function instanceHandlers(deps: InstanceServiceDeps): Handlers {
  const { placement } = deps;
  const create: Method<pb.CreateInstanceRequest, pb.Instance> = {
    access: MEMBERS_TOO,
    async handle(req, { em, caller }) {
      const name = req.name.trim();
      if (!isName(name)) throw new InvalidArgumentError([{ field: 'name', description: NAME_HINT }]);
      const resolved = await resolveSchedulingRequest(em, caller, req.request, 'request', {
        imageRequired: true,
      });
      if (await em.count(Instance, { projectId: resolved.project.id, name })) {
        throw new AlreadyExistsError('instance', 'name', name);
      }
      const { flavor, project } = resolved;
      const instance = await placement.boot(em, resolved.placement, {
        name,
        projectId: project.id,
        flavorId: flavor.id,
        image: resolved.image,
        hints: resolved.placement.hints as Record<string, string>,
        availabilityZone: resolved.placement.availabilityZone,
        vcpus: flavor.vcpus,
        ramMb: flavor.ramMb,
        diskGb: flavor.diskGb,
        networkId: await resolveNetwork(em, project, req.network),
        imageId: await resolveImage(em, project, resolved.image),
      });
      deps.provisioner?.kick();
      return one(em, instance);
    },
  };
  const get: Method<pb.GetInstanceRequest, pb.Instance> = {
    access: MEMBERS_TOO,
    async handle(req, { em, caller }) {
      return one(em, await findInstance(em, caller, req.id, req.project));
    },
  };
  const list: Method<pb.ListInstancesRequest, pb.ListInstancesResponse> = {
    access: MEMBERS_TOO,
    async handle(req, { em, caller }) {
      const scoped = caller.role === 'member' || req.project;
      const where = scoped
        ? { projectId: (await resolveProject(em, caller, req.project, 'project')).id }
        : {};
      const listing = await listResources(em, Instance, req, where);
      return { instances: await instancesToProto(em, listing.rows), nextPageToken: listing.nextPageToken };
    },
  };
  const remove: Method<pb.DeleteInstanceRequest, pb.Instance> = {
    access: MEMBERS_TOO,
    async handle(req, { em, caller }) {
      const instance = await findInstance(em, caller, req.id, req.project);
      // A hypervisor placement, or a node whose flow nobody has started, touched nothing: release at once.
      const untouched =
        instance.hostKind !== 'node' ||
        (await em.nativeUpdate(
          Instance,
          { id: instance.id, state: 'scheduled', step: '', leaseOwner: null },
          { flow: null },
        )) === 1;
      if (untouched) {
        const before = await one(em, instance);
        await placement.release(em, instance);
        deps.bus.publish(instance.id, { kind: 'changed' });
        return before;
      }
      // The conductor tears the node down; a deploy under way stops at its next step.
      await em.nativeUpdate(
        Instance,
        { id: instance.id, state: { $ne: 'deleting' } },
        { state: 'deleting', flow: 'delete', step: '', retries: 0, reason: '', wipeFull: req.fullWipe },
      );
      deps.bus.publish(instance.id, { kind: 'changed' });
      deps.provisioner?.kick();
      return one(em, await em.fork().findOneOrFail(Instance, { id: instance.id }));
    },
  };
  const reboot: Method<pb.RebootInstanceRequest, pb.Instance> = {
    access: MEMBERS_TOO,
    async handle(req, { em, caller, signal }) {
      const instance = await findInstance(em, caller, req.id, req.project);
      if (instance.hostKind !== 'node' || instance.state !== 'active') {
        throw new FailedPreconditionError(
          'INSTANCE_NOT_ACTIVE',
          `instance ${instance.name} is ${instance.state}${instance.hostKind === 'node' ? '' : ' on a hypervisor host'}; only ACTIVE bare-metal instances can be rebooted`,
          { instance: instance.name, state: instance.state },
        );
      }
      await deps.reboot(em, instance, req.hard, signal);
      return one(em, instance);
    },
  };
  const watch: ServerStreamMethod<pb.WatchInstanceRequest, pb.InstanceEvent> = {
    access: MEMBERS_TOO,
    stream: 'server',
    async handle(req, { em, caller, signal }, send) {
      const found = await findInstance(em, caller, req.id, req.project);
      const events = deps.bus.subscribe(found.id);
      const ending = AbortSignal.any([signal, deps.closing]);
      const read = () => em.fork().findOne(Instance, { id: found.id });
      const ended = (i: Instance) => !req.untilDeleted && (i.state === 'active' || i.state === 'error');
      try {
        let last = await read();
        if (!last) throw new NotFoundError('instance', req.id.trim());
        let shown = await one(em.fork(), last);
        await send({ instance: shown, progressOnly: false, deleted: false });
        while (!ended(last)) {
          await events.wait(WATCH_POLL_MS, ending);
          if (signal.aborted) return;
          if (deps.closing.aborted) throw new ControllerShuttingDownError();
          const batch = events.take();
          for (const event of batch) {
            if (event.kind === 'progress') {
              shown = { ...shown, progress: progressToProto(event.progress) };
              await send({ instance: shown, progressOnly: true, deleted: false });
            }
          }
          if (batch.length > 0 && batch.every((e) => e.kind === 'progress')) continue;
          const fresh = await read();
          if (!fresh) {
            await send({ instance: shown, progressOnly: false, deleted: true });
            return;
          }
          const next = await one(em.fork(), fresh);
          if (changedBeyondProgress(shown, next)) {
            await send({ instance: next, progressOnly: false, deleted: false });
          } else if (next.progress && next.progress.bytesDone !== shown.progress?.bytesDone) {
            // Progress recorded by the controller that serves the node's agent.
            await send({ instance: next, progressOnly: true, deleted: false });
          }
          shown = next;
          last = fresh;
        }
      } finally {
        events.close();
      }
    },
  };
  return {
    CreateInstance: create,
    GetInstance: get,
    ListInstances: list,
    DeleteInstance: remove,
    RebootInstance: reboot,
    WatchInstance: watch,
  } as Handlers;
}

/** True when a watcher should hear of the change: anything but the update time and progress. */
function changedBeyondProgress(a: pb.Instance, b: pb.Instance): boolean {
  const strip = (i: pb.Instance) => JSON.stringify({ ...i, updateTime: undefined, progress: undefined });
  return strip(a) !== strip(b);
}
