import { FailedPreconditionError } from '../domain/errors.ts';
import { NETWORK_FIELDS } from '../domain/network.ts';
import { Network, type NetworkKind } from './entities/network.ts';
import { Node } from './entities/node.ts';
import { Project } from './entities/project.ts';
import { findByRef, type ResourceSpec } from './resource-repository.ts';

/** NetworkKind of the API (1 service, 2 project; 0 means the default, project). */
const KINDS: Record<number, NetworkKind> = { 0: 'project', 1: 'service', 2: 'project' };

/** How networks are validated, stored and guarded (resource-repository.ts does the rest). */
export const networks: ResourceSpec<Network> = {
  kind: 'network',
  entity: Network,
  fields: NETWORK_FIELDS,
  uniques: {
    network_name_key: 'name',
    network_vlan_id_key: 'vlan_id',
    network_service_key: 'kind',
    network_bridge_key: 'bridge',
  },
  async toColumns(fields, { em, violations, existing }) {
    const columns: Record<string, unknown> = existing
      ? { ...fields }
      : { kind: 0, projectId: '', bridge: '', description: '', ...fields };
    if ('kind' in columns) {
      const kind = KINDS[columns.kind as number];
      if (!kind) violations.add('network.kind', 'must be NETWORK_KIND_SERVICE or NETWORK_KIND_PROJECT');
      columns.kind = kind;
    }
    if ('projectId' in columns) {
      const ref = columns.projectId as string;
      if (columns.kind === 'service' && ref) {
        violations.add('network.project_id', 'must be empty for the service network');
      } else if (columns.kind === 'project' && !ref) {
        violations.add('network.project_id', 'is required for a project network (a project id or name)');
      } else {
        // Lock the project so it cannot be deleted while a network is being given to it.
        columns.projectId = ref ? (await findByRef(em, 'project', Project, ref, { lock: true })).id : null;
      }
    }
    if (existing && columns.name === '') violations.add('network.name', 'cannot be cleared');
    return columns as Partial<Network>;
  },
  async beforeDelete(em, row) {
    const nodes = await em.find(
      Node,
      { $or: [{ networkId: row.id }, { targetNetworkId: row.id }] },
      { fields: ['name'], limit: 5 },
    );
    if (nodes.length > 0) {
      throw new FailedPreconditionError(
        'NETWORK_IN_USE',
        `network ${row.name} still has node ports on it or moving to it (${nodes.map((n) => n.name).join(', ')}); move them to another network first`,
        { network: row.name },
      );
    }
  },
};
