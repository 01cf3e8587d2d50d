import type { EntityManager } from '@mikro-orm/sql';
import { AlreadyExistsError, FailedPreconditionError } from '../domain/errors.ts';
import {
  AGGREGATE_FIELDS,
  defaultNodeName,
  defaultSwitchName,
  FLAVOR_FIELDS,
  HOST_FIELDS,
  NODE_FIELDS,
  PROJECT_FIELDS,
  SWITCH_FIELDS,
} from '../domain/inventory.ts';
import { isDeletable } from '../domain/provision-state.ts';
import { driverOptionViolations } from '../drivers/network/registry.ts';
import { Aggregate, AggregateMember, type MemberKind } from './entities/aggregate.ts';
import { ApiToken } from './entities/api-token.ts';
import { Flavor } from './entities/flavor.ts';
import { Host } from './entities/host.ts';
import { Network } from './entities/network.ts';
import { Node } from './entities/node.ts';
import { Project } from './entities/project.ts';
import { Switch } from './entities/switch.ts';
import { findByRef, type ResourceSpec } from './resource-repository.ts';
import type { SecretBox } from './secrets.ts';

/** The six kinds of inventory object, wired to the controller's secret key. */
export interface InventoryResources {
  switches: ResourceSpec<Switch>;
  nodes: ResourceSpec<Node>;
  projects: ResourceSpec<Project>;
  flavors: ResourceSpec<Flavor>;
  aggregates: ResourceSpec<Aggregate>;
  hosts: ResourceSpec<Host>;
}

/** Moves a secret input field to its sealed column: '' clears it, anything else is sealed. */
function sealInto(fields: Record<string, unknown>, from: string, to: string, secrets: SecretBox): void {
  if (!(from in fields)) return;
  const plain = fields[from] as string;
  delete fields[from];
  fields[to] = plain ? secrets.seal(plain) : null;
}

async function removeMemberships(em: EntityManager, kind: MemberKind, id: string): Promise<void> {
  await em.nativeDelete(AggregateMember, { memberKind: kind, memberId: id });
}

export function inventoryResources(secrets: SecretBox): InventoryResources {
  const switches: ResourceSpec<Switch> = {
    kind: 'switch',
    entity: Switch,
    fields: SWITCH_FIELDS,
    uniques: { switch_name_key: 'name' },
    async toColumns(fields, { existing, violations }) {
      const columns: Record<string, unknown> = existing
        ? { ...fields }
        : {
            username: '',
            description: '',
            hostKeyFingerprint: '',
            password: '',
            sshPrivateKey: '',
            ...fields,
          };
      if (!existing && !columns.name) columns.name = defaultSwitchName(columns.address as string);
      if (existing && columns.name === '') violations.add('switch.name', 'cannot be cleared');
      sealInto(columns, 'password', 'passwordSealed', secrets);
      sealInto(columns, 'sshPrivateKey', 'sshPrivateKeySealed', secrets);
      if ('driverOptions' in columns || 'driver' in columns) {
        const driver = (columns.driver ?? existing?.driver) as string;
        const options = (columns.driverOptions ?? existing?.driverOptions ?? {}) as Record<string, string>;
        for (const v of driverOptionViolations(driver, options)) violations.add(v.field, v.description);
      }
      return columns as Partial<Switch>;
    },
    async beforeDelete(em, row) {
      const nodes = await em.count(Node, { switchId: row.id });
      if (nodes > 0) {
        throw new FailedPreconditionError(
          'SWITCH_IN_USE',
          `switch ${row.name} still has ${nodes} node(s) on its ports; delete them or move them to another switch first`,
          { switch: row.name, nodes: String(nodes) },
        );
      }
    },
  };

  const nodes: ResourceSpec<Node> = {
    kind: 'node',
    entity: Node,
    fields: NODE_FIELDS,
    uniques: { node_name_key: 'name', node_mac_key: 'mac', node_switch_port_key: 'switch_port' },
    async toColumns(fields, { em, violations, existing }) {
      const columns: Record<string, unknown> = existing
        ? { ...fields }
        : {
            bmcUsername: '',
            bmcPassword: '',
            powerDriver: 'ipmitool',
            switchId: '',
            switchPort: '',
            maintenance: false,
            maintenanceReason: '',
            provisionState: 'available',
            lastError: '',
            instanceId: null,
            rootDisk: '/dev/sda',
            ...fields,
          };
      // The MAC is the node's identity: report it as the conflict even when the
      // defaulted name (derived from the MAC) would trip its constraint first.
      if ('mac' in columns) {
        const holder = await em.findOne(Node, { mac: columns.mac as string }, { fields: ['id'] });
        if (holder && holder.id !== existing?.id)
          throw new AlreadyExistsError('node', 'mac', columns.mac as string);
      }
      if (!existing && !columns.name) columns.name = defaultNodeName(columns.mac as string);
      if (existing && columns.name === '') violations.add('node.name', 'cannot be cleared');
      sealInto(columns, 'bmcPassword', 'bmcPasswordSealed', secrets);
      if ('switchId' in columns) {
        const ref = columns.switchId as string;
        // Lock the switch so it cannot be deleted while a node is being put on it.
        columns.switchId = ref ? (await findByRef(em, 'switch', Switch, ref, { lock: true })).id : null;
      }
      const switchId = 'switchId' in columns ? columns.switchId : existing?.switchId;
      const port = 'switchPort' in columns ? columns.switchPort : existing?.switchPort;
      if (switchId && !port) violations.add('node.switch_port', 'is required when the node is on a switch');
      if (!switchId && port) violations.add('node.switch_id', 'is required when a switch port is given');
      if (columns.maintenance === false && !('maintenanceReason' in fields)) columns.maintenanceReason = '';
      return columns as Partial<Node>;
    },
    async beforeDelete(em, row) {
      if (!isDeletable(row.provisionState, row.instanceId)) {
        throw new FailedPreconditionError(
          'NODE_IN_USE',
          `node ${row.name} is ${row.provisionState}${row.instanceId ? ` with instance ${row.instanceId}` : ''}; delete the instance or wait for the node to become available first`,
          { node: row.name, provision_state: row.provisionState },
        );
      }
      await removeMemberships(em, 'node', row.id);
    },
  };

  const projects: ResourceSpec<Project> = {
    kind: 'project',
    entity: Project,
    fields: PROJECT_FIELDS,
    uniques: { project_name_key: 'name' },
    async toColumns(fields, { existing }) {
      return (existing ? fields : { isolated: false, description: '', ...fields }) as Partial<Project>;
    },
    async beforeDelete(em, row) {
      const dedicated = await em.find(Aggregate, { metadata: { project_id: row.id } } as never);
      if (dedicated.length > 0) {
        throw new FailedPreconditionError(
          'PROJECT_IN_USE',
          `project ${row.name} owns aggregate ${dedicated.map((a) => a.name).join(', ')}; unset its project_id metadata first`,
          { project: row.name },
        );
      }
      const owned = await em.find(Network, { projectId: row.id }, { fields: ['name'] });
      if (owned.length > 0) {
        throw new FailedPreconditionError(
          'PROJECT_IN_USE',
          `project ${row.name} owns network ${owned.map((n) => n.name).join(', ')}; delete them first`,
          { project: row.name },
        );
      }
      await em.nativeDelete(ApiToken, { projectId: row.id });
    },
  };

  const flavors: ResourceSpec<Flavor> = {
    kind: 'flavor',
    entity: Flavor,
    fields: FLAVOR_FIELDS,
    uniques: { flavor_name_key: 'name' },
    async toColumns(fields, { existing }) {
      return (existing ? fields : { extraSpecs: {}, ...fields }) as Partial<Flavor>;
    },
  };

  const aggregates: ResourceSpec<Aggregate> = {
    kind: 'aggregate',
    entity: Aggregate,
    fields: AGGREGATE_FIELDS,
    uniques: { aggregate_name_key: 'name' },
    async toColumns(fields, { existing }) {
      return (existing ? fields : { availabilityZone: '', metadata: {}, ...fields }) as Partial<Aggregate>;
    },
    async beforeDelete(em, row) {
      const members = await em.count(AggregateMember, { aggregateId: row.id });
      if (members > 0) {
        throw new FailedPreconditionError(
          'AGGREGATE_NOT_EMPTY',
          `aggregate ${row.name} still has ${members} host(s); remove them first`,
          { aggregate: row.name, hosts: String(members) },
        );
      }
    },
  };

  const hosts: ResourceSpec<Host> = {
    kind: 'host',
    entity: Host,
    fields: HOST_FIELDS,
    uniques: { host_name_key: 'name' },
    async toColumns(fields) {
      return fields as Partial<Host>;
    },
    async beforeDelete(em, row) {
      await removeMemberships(em, 'host', row.id);
    },
  };

  return { switches, nodes, projects, flavors, aggregates, hosts };
}
