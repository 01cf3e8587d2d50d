import type { EntityManager } from '@mikro-orm/sql';
import type { Empty } from '../../../build/gen/google/protobuf/empty.ts';
import type * as pb from '../../../build/gen/ingot/v1/instance.ts';
import { InstanceState } from '../../../build/gen/ingot/v1/instance.ts';
import type { Placement } from '../conductor/placement.ts';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from '../domain/errors.ts';
import { isName, NAME_HINT } from '../domain/formats.ts';
import { Host } from '../store/entities/host.ts';
import { Instance } from '../store/entities/instance.ts';
import { Node } from '../store/entities/node.ts';
import { listResources } from '../store/resource-repository.ts';
import type { Access, Caller } from './auth.ts';
import type { Method } from './rpc.ts';
import { instanceWhere, resolveProject, resolveSchedulingRequest } from './scheduling-request.ts';

const MEMBERS_TOO: Access = ['admin', 'member'];

const STATES: Record<string, InstanceState> = {
  scheduled: InstanceState.INSTANCE_STATE_SCHEDULED,
  deploying: InstanceState.INSTANCE_STATE_DEPLOYING,
  active: InstanceState.INSTANCE_STATE_ACTIVE,
  deleting: InstanceState.INSTANCE_STATE_DELETING,
  error: InstanceState.INSTANCE_STATE_ERROR,
};

async function toProto(em: EntityManager, rows: Instance[]): Promise<pb.Instance[]> {
  const ids = (kind: string) => rows.filter((r) => r.hostKind === kind).map((r) => r.hostId);
  const [nodes, hosts] = await Promise.all([
    em.find(Node, { id: { $in: ids('node') } }, { fields: ['id', 'name'] }),
    em.find(Host, { id: { $in: ids('host') } }, { fields: ['id', 'name'] }),
  ]);
  const names = new Map<string, string>([...nodes, ...hosts].map((h) => [h.id, h.name]));
  return rows.map((i) => ({
    id: i.id,
    name: i.name,
    projectId: i.projectId,
    flavorId: i.flavorId,
    image: i.image,
    hints: i.hints,
    availabilityZone: i.availabilityZone,
    state: STATES[i.state] ?? InstanceState.INSTANCE_STATE_UNSPECIFIED,
    reason: i.reason,
    hostKind: i.hostKind,
    hostId: i.hostId,
    hostName: names.get(i.hostId) ?? '',
    vcpus: i.vcpus,
    ramMb: i.ramMb,
    diskGb: i.diskGb,
    createTime: i.createdAt,
    updateTime: i.updatedAt,
  }));
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

/** InstanceService: boot (schedule + claim), show, list and delete; members see only their project. */
export function instanceHandlers(placement: Placement): Record<string, Method<never, unknown>> {
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
      const { flavor } = resolved;
      const instance = await placement.boot(em, resolved.placement, {
        name,
        projectId: resolved.project.id,
        flavorId: flavor.id,
        image: resolved.image,
        hints: resolved.placement.hints as Record<string, string>,
        availabilityZone: resolved.placement.availabilityZone,
        vcpus: flavor.vcpus,
        ramMb: flavor.ramMb,
        diskGb: flavor.diskGb,
      });
      return (await toProto(em, [instance]))[0] as pb.Instance;
    },
  };
  const get: Method<pb.GetInstanceRequest, pb.Instance> = {
    access: MEMBERS_TOO,
    async handle(req, { em, caller }) {
      return (await toProto(em, [await findInstance(em, caller, req.id, req.project)]))[0] as pb.Instance;
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
      return { instances: await toProto(em, listing.rows), nextPageToken: listing.nextPageToken };
    },
  };
  const remove: Method<pb.DeleteInstanceRequest, Empty> = {
    access: MEMBERS_TOO,
    async handle(req, { em, caller }) {
      await placement.release(em, await findInstance(em, caller, req.id, req.project));
      return {};
    },
  };
  return {
    CreateInstance: create,
    GetInstance: get,
    ListInstances: list,
    DeleteInstance: remove,
  } as Record<string, Method<never, unknown>>;
}
