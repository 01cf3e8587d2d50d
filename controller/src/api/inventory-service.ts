import type { EntityManager } from '@mikro-orm/sql';
import type { Empty } from '../../../build/gen/google/protobuf/empty.ts';
import type * as pb from '../../../build/gen/ingot/v1/inventory.ts';
import { addMember, memberNames, removeMember, setMetadata } from '../store/aggregate-members.ts';
import type { Aggregate } from '../store/entities/aggregate.ts';
import { Switch } from '../store/entities/switch.ts';
import type { InventoryResources } from '../store/inventory-resources.ts';
import {
  createResource,
  deleteResource,
  findByRef,
  listResources,
  type ResourceSpec,
  type Row,
  updateResource,
} from '../store/resource-repository.ts';
import { ADMIN_ONLY } from './auth.ts';
import {
  aggregateToProto,
  flavorToProto,
  hostToProto,
  nodeToProto,
  projectToProto,
  provisionStateFromProto,
  switchToProto,
} from './inventory-mappers.ts';
import type { Method } from './rpc.ts';

type Handlers = Record<string, Method<never, unknown>>;
const EMPTY: Empty = {};

interface Paged {
  pageSize: number;
  pageToken: string;
}

/** Create/Get/List/Update/Delete for one kind, named as the API names them. */
function crud<E extends Row, M>(
  spec: ResourceSpec<E>,
  names: { singular: string; plural: string; field: string; listField: string },
  toProto: (rows: E[], em: EntityManager) => Promise<M[]>,
  filters: (request: never, em: EntityManager) => Promise<Record<string, unknown>> = async () => ({}),
): Handlers {
  const one = async (row: E, em: EntityManager) => (await toProto([row], em))[0] as M;
  return {
    [`Create${names.singular}`]: {
      access: ADMIN_ONLY,
      handle: async (req: Record<string, object | undefined>, { em }) =>
        one(await createResource(em, spec, req[names.field]), em),
    },
    [`Get${names.singular}`]: {
      access: ADMIN_ONLY,
      handle: async (req: { id: string }, { em }) =>
        one(await findByRef(em, spec.kind, spec.entity, req.id), em),
    },
    [`List${names.plural}`]: {
      access: ADMIN_ONLY,
      handle: async (req: Paged, { em }) => {
        const listing = await listResources(em, spec.entity, req, await filters(req as never, em));
        return { [names.listField]: await toProto(listing.rows, em), nextPageToken: listing.nextPageToken };
      },
    },
    [`Update${names.singular}`]: {
      access: ADMIN_ONLY,
      handle: async (req: Record<string, unknown> & { updateMask?: string[] }, { em }) =>
        one(await updateResource(em, spec, req[names.field] as object | undefined, req.updateMask), em),
    },
    [`Delete${names.singular}`]: {
      access: ADMIN_ONLY,
      handle: async (req: { id: string }, { em }) => {
        await deleteResource(em, spec, req.id);
        return EMPTY;
      },
    },
  } as Handlers;
}

const each =
  <E, M>(fn: (row: E) => M) =>
  async (rows: E[]) =>
    rows.map(fn);

async function aggregatesToProto(rows: Aggregate[], em: EntityManager): Promise<pb.Aggregate[]> {
  const names = await memberNames(
    em,
    rows.map((r) => r.id),
  );
  return rows.map((r) => aggregateToProto(r, names.get(r.id) ?? []));
}

async function nodeFilters(req: pb.ListNodesRequest, em: EntityManager): Promise<Record<string, unknown>> {
  const where: Record<string, unknown> = {};
  if (req.switchId) where.switchId = (await findByRef(em, 'switch', Switch, req.switchId)).id;
  const state = provisionStateFromProto(req.provisionState);
  if (state) where.provisionState = state;
  if (req.maintenance !== undefined) where.maintenance = req.maintenance;
  return where;
}

/**
 * InventoryService: the thin edge over the inventory repositories.
 * `onChange` runs after every successful change (the scheduler's view reloads).
 */
export function inventoryHandlers(
  resources: InventoryResources,
  { onChange }: { onChange: () => void },
): Handlers {
  const aggregateReply = async (row: Aggregate, em: EntityManager) => (await aggregatesToProto([row], em))[0];
  const handlers: Handlers = {
    ...crud(
      resources.switches,
      { singular: 'Switch', plural: 'Switches', field: 'switch', listField: 'switches' },
      each(switchToProto),
      async (req: pb.ListSwitchesRequest) => (req.driver ? { driver: req.driver.trim().toLowerCase() } : {}),
    ),
    ...crud(
      resources.nodes,
      { singular: 'Node', plural: 'Nodes', field: 'node', listField: 'nodes' },
      each(nodeToProto),
      nodeFilters,
    ),
    ...crud(
      resources.projects,
      { singular: 'Project', plural: 'Projects', field: 'project', listField: 'projects' },
      each(projectToProto),
    ),
    ...crud(
      resources.flavors,
      { singular: 'Flavor', plural: 'Flavors', field: 'flavor', listField: 'flavors' },
      each(flavorToProto),
    ),
    ...crud(
      resources.aggregates,
      { singular: 'Aggregate', plural: 'Aggregates', field: 'aggregate', listField: 'aggregates' },
      aggregatesToProto,
    ),
    ...crud(
      resources.hosts,
      { singular: 'Host', plural: 'Hosts', field: 'host', listField: 'hosts' },
      each(hostToProto),
    ),
    AddAggregateHost: {
      access: ADMIN_ONLY,
      handle: async (req: pb.AddAggregateHostRequest, { em }) =>
        aggregateReply(await addMember(em, req.aggregate, req.host), em),
    },
    RemoveAggregateHost: {
      access: ADMIN_ONLY,
      handle: async (req: pb.RemoveAggregateHostRequest, { em }) =>
        aggregateReply(await removeMember(em, req.aggregate, req.host), em),
    },
    SetAggregateMetadata: {
      access: ADMIN_ONLY,
      handle: async (req: pb.SetAggregateMetadataRequest, { em }) =>
        aggregateReply(await setMetadata(em, req.aggregate, req.set, req.unset), em),
    },
  } as Handlers;
  for (const [name, method] of Object.entries(handlers)) {
    if (/^(Get|List)/.test(name)) continue;
    const handle = method.handle;
    method.handle = async (request, ctx) => {
      const response = await handle(request, ctx);
      onChange();
      return response;
    };
  }
  return handlers;
}
