import { type Command, Option } from 'commander';
import {
  CreateNetworkRequest,
  type Network,
  NetworkKind,
  networkKindToJSON,
  type PortStatus,
  type SetNodeNetworkResponse,
} from '../../../build/gen/ingot/v1/network.ts';
import { parseWholeNumber } from '../args.ts';
import { listAll } from '../connection.ts';
import type { CommandContext } from '../context.ts';
import { formatTime, toProtoJson, type View, yesNo } from '../output.ts';
import { projectNamesById } from './project.ts';

/** `NETWORK_KIND_SERVICE` → `service`. */
const kindName = (kind: NetworkKind): string =>
  networkKindToJSON(kind)
    .replace(/^NETWORK_KIND_/, '')
    .toLowerCase();

export function networkView(projectNames: ReadonlyMap<string, string> = new Map()): View<Network> {
  const projectOf = (n: Network) => projectNames.get(n.projectId) ?? n.projectId;
  return {
    columns: [
      { header: 'NAME', value: (n) => n.name },
      { header: 'KIND', value: (n) => kindName(n.kind) },
      { header: 'PROJECT', value: projectOf },
      { header: 'VLAN', value: (n) => String(n.vlanId) },
      { header: 'BRIDGE', value: (n) => n.bridge },
      { header: 'DESCRIPTION', value: (n) => n.description },
    ],
    fields: (n) => [
      ['id', n.id],
      ['name', n.name],
      ['kind', kindName(n.kind)],
      ['project', projectOf(n)],
      ['project_id', n.projectId],
      ['vlan_id', String(n.vlanId)],
      ['bridge', n.bridge],
      ['description', n.description],
      ['create_time', formatTime(n.createTime)],
      ['update_time', formatTime(n.updateTime)],
    ],
    json: (n) => toProtoJson(n, { enums: { kind: (v) => networkKindToJSON(v as NetworkKind) } }),
  };
}

export interface NetworkCreateOptions {
  vlan: number;
  project?: string;
  service?: boolean;
  bridge?: string;
  description?: string;
}

export function networkCreateRequest(name: string, opts: NetworkCreateOptions): CreateNetworkRequest {
  return CreateNetworkRequest.fromPartial({
    network: {
      name,
      kind: opts.service ? NetworkKind.NETWORK_KIND_SERVICE : NetworkKind.NETWORK_KIND_PROJECT,
      projectId: opts.project ?? '',
      vlanId: opts.vlan,
      bridge: opts.bridge ?? '',
      description: opts.description ?? '',
    },
  });
}

/** `bmctl node network`'s answer, one line for people. */
export function describeMove(r: SetNodeNetworkResponse, switchName: string): string {
  return r.changed
    ? `node ${r.nodeName}: port ${r.switchPort} on switch ${switchName} moved to network ${r.networkName}`
    : `node ${r.nodeName}: port ${r.switchPort} on switch ${switchName} already on network ${r.networkName}`;
}

export const moveView: View<SetNodeNetworkResponse> = {
  columns: [],
  fields: (r) => [
    ['node', r.nodeName],
    ['switch_port', r.switchPort],
    ['network', r.networkName],
    ['changed', yesNo(r.changed)],
  ],
  json: (r) => toProtoJson(r),
};

export const portStatusView: View<PortStatus> = {
  columns: [],
  fields: (s) => [
    ['switch', s.switchName],
    ['port', s.port],
    ['mode', s.mode],
    ['vlan_ids', s.vlanIds.join(',')],
    ['bridge', s.bridge],
    ['link', s.link],
    ['network', s.networkName],
    ['node', s.nodeName],
    ['recorded_network_id', s.recordedNetworkId],
    ['in_sync', yesNo(s.inSync)],
  ],
  json: (s) => toProtoJson(s),
};

export function registerNetworkCommands(program: Command, ctx: CommandContext): void {
  const noun = program
    .command('network')
    .description(
      'The service network and projects’ networks: a VLAN each, and a bridge on Linux-bridge switches',
    );

  noun
    .command('create')
    .description(
      'Create a network: `bmctl network create provisioning --service --vlan 100`, ' +
        '`bmctl network create acme-a --project acme --vlan 200`',
    )
    .argument('<name>', 'unique name')
    .requiredOption('--vlan <id>', '802.1Q VLAN id, 1-4094', parseWholeNumber)
    .option('--project <project>', 'owning project (id or name); required unless --service')
    .option('--service', 'the service (provisioning) network; there is one')
    .option('--bridge <bridge>', 'its bridge on Linux-bridge switches')
    .option('--description <text>', 'free text')
    .action(async (name: string, opts: NetworkCreateOptions) => {
      const api = await ctx.inventory();
      ctx.printer().one(await api.call('createNetwork', networkCreateRequest(name, opts)), networkView());
    });

  noun
    .command('list')
    .description('List networks')
    .option('--project <project>', 'only this project’s networks')
    .addOption(
      new Option('--kind <kind>', 'only service or project networks').choices(['service', 'project']),
    )
    .action(async (opts: { project?: string; kind?: 'service' | 'project' }) => {
      const api = await ctx.inventory();
      const kind =
        opts.kind === 'service'
          ? NetworkKind.NETWORK_KIND_SERVICE
          : opts.kind === 'project'
            ? NetworkKind.NETWORK_KIND_PROJECT
            : NetworkKind.NETWORK_KIND_UNSPECIFIED;
      const networks = await listAll(async (page) => {
        const res = await api.call('listNetworks', { ...page, project: opts.project ?? '', kind });
        return { items: res.networks, nextPageToken: res.nextPageToken };
      });
      ctx.printer().many(networks, networkView(await projectNamesById(ctx)));
    });

  noun
    .command('show')
    .description('Show one network')
    .argument('<id>', 'id or name')
    .action(async (id: string) => {
      const api = await ctx.inventory();
      ctx.printer().one(await api.call('getNetwork', { id }), networkView(await projectNamesById(ctx)));
    });

  noun
    .command('delete')
    .description('Delete a network (refused while a node’s port is on it)')
    .argument('<id>', 'id or name')
    .action(async (id: string) => {
      const api = await ctx.inventory();
      await api.call('deleteNetwork', { id });
      ctx.printer().done(`network ${id} deleted`);
    });
}
