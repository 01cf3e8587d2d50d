import { defineEntity, p } from '@mikro-orm/core';
import { identity } from './common.ts';

/** `service`: the provisioning network nodes PXE-boot on (one); `project`: a tenant's network. */
export type NetworkKind = 'service' | 'project';

/** A layer-2 network: a VLAN on the switches and, for the Linux-bridge driver, a bridge. */
export const NetworkSchema = defineEntity({
  name: 'Network',
  tableName: 'network',
  properties: {
    ...identity,
    name: p.string().unique('network_name_key'),
    kind: p.string().$type<NetworkKind>(),
    /** The owning project; null for the service network. */
    projectId: p.uuid().nullable().index('network_project_id_idx'),
    vlanId: p.integer().unique('network_vlan_id_key'),
    /** Linux bridge of this network (Linux-bridge switches); '' when none. */
    bridge: p.string(),
    description: p.text(),
  },
  // Partial unique indexes (one service network; a bridge belongs to one network), as migration 0004
  // creates them: declared here so that the ORM's schema matches the migrations.
  indexes: [
    {
      name: 'network_service_key',
      expression: `create unique index "network_service_key" on "network" ("kind") where "kind" = 'service'`,
    },
    {
      name: 'network_bridge_key',
      expression: `create unique index "network_bridge_key" on "network" ("bridge") where "bridge" <> ''`,
    },
  ],
});

export class Network extends NetworkSchema.class {}
NetworkSchema.setClass(Network);
