import type { Empty } from '../../../build/gen/google/protobuf/empty.ts';
import type * as pb from '../../../build/gen/ingot/v1/network.ts';
import { NetworkKind } from '../../../build/gen/ingot/v1/network.ts';
import type { PortFlipper } from '../conductor/port-flips.ts';
import { InvalidArgumentError } from '../domain/errors.ts';
import { Network } from '../store/entities/network.ts';
import { Project } from '../store/entities/project.ts';
import { networks } from '../store/networks.ts';
import {
  createResource,
  deleteResource,
  findByRef,
  listResources,
  updateResource,
} from '../store/resource-repository.ts';
import { ADMIN_ONLY } from './auth.ts';
import type { Method } from './rpc.ts';

type Handlers = Record<string, Method<never, unknown>>;
const EMPTY: Empty = {};

export function networkToProto(n: Network): pb.Network {
  return {
    id: n.id,
    name: n.name,
    kind: n.kind === 'service' ? NetworkKind.NETWORK_KIND_SERVICE : NetworkKind.NETWORK_KIND_PROJECT,
    projectId: n.projectId ?? '',
    vlanId: n.vlanId,
    bridge: n.bridge,
    description: n.description,
    createTime: n.createdAt,
    updateTime: n.updatedAt,
  };
}

/** Checks a required reference field, so that a missing one is INVALID_ARGUMENT naming it. */
function required(value: string, field: string): string {
  if (!value.trim())
    throw new InvalidArgumentError([{ field, description: 'is required (an id or a name)' }]);
  return value.trim();
}

/** NetworkService: network CRUD over the resource repository, port moves and reads through the PortFlipper. */
export function networkHandlers(flipper: PortFlipper): Handlers {
  return {
    CreateNetwork: {
      access: ADMIN_ONLY,
      handle: async (req: pb.CreateNetworkRequest, { em }) =>
        networkToProto(await createResource(em, networks, req.network)),
    },
    GetNetwork: {
      access: ADMIN_ONLY,
      handle: async (req: pb.GetNetworkRequest, { em }) =>
        networkToProto(await findByRef(em, 'network', Network, req.id)),
    },
    ListNetworks: {
      access: ADMIN_ONLY,
      handle: async (req: pb.ListNetworksRequest, { em }): Promise<pb.ListNetworksResponse> => {
        const where: Record<string, unknown> = {};
        if (req.project) where.projectId = (await findByRef(em, 'project', Project, req.project)).id;
        if (req.kind === NetworkKind.NETWORK_KIND_SERVICE) where.kind = 'service';
        if (req.kind === NetworkKind.NETWORK_KIND_PROJECT) where.kind = 'project';
        const listing = await listResources(em, Network, req, where);
        return { networks: listing.rows.map(networkToProto), nextPageToken: listing.nextPageToken };
      },
    },
    UpdateNetwork: {
      access: ADMIN_ONLY,
      handle: async (req: pb.UpdateNetworkRequest, { em }) =>
        networkToProto(await updateResource(em, networks, req.network, req.updateMask)),
    },
    DeleteNetwork: {
      access: ADMIN_ONLY,
      handle: async (req: pb.DeleteNetworkRequest, { em }) => {
        await deleteResource(em, networks, req.id);
        return EMPTY;
      },
    },
    SetNodeNetwork: {
      access: ADMIN_ONLY,
      handle: async (req: pb.SetNodeNetworkRequest): Promise<pb.SetNodeNetworkResponse> => {
        const node = required(req.node, 'node');
        const network = required(req.network, 'network');
        return flipper.setNodeNetwork(node, network);
      },
    },
    GetPortStatus: {
      access: ADMIN_ONLY,
      handle: async (req: pb.GetPortStatusRequest): Promise<pb.PortStatus> => {
        const sw = required(req.switch, 'switch');
        if (!req.port.trim()) throw new InvalidArgumentError([{ field: 'port', description: 'is required' }]);
        const s = await flipper.portStatus(sw, req.port.trim());
        return {
          switchId: s.switchId,
          switchName: s.switchName,
          port: s.port,
          mode: s.mode,
          vlanIds: s.vlanIds,
          bridge: s.bridge,
          link: s.link,
          networkId: s.network?.id ?? '',
          networkName: s.network?.name ?? '',
          nodeId: s.node?.id ?? '',
          nodeName: s.node?.name ?? '',
          recordedNetworkId: s.node?.networkId ?? '',
          inSync: s.inSync,
        };
      },
    },
  };
}
