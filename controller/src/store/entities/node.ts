import { defineEntity, p } from '@mikro-orm/core';
import type { ProvisionState } from '../../domain/provision-state.ts';
import { identity, size } from './common.ts';

export const NodeSchema = defineEntity({
  name: 'Node',
  tableName: 'node',
  properties: {
    ...identity,
    name: p.string().unique('node_name_key'),
    ip: p.string(),
    mac: p.string().unique('node_mac_key'),
    cpus: p.integer(),
    ...size,
    bmcAddress: p.string(),
    bmcUsername: p.string(),
    /** Sealed with the controller's secret key (see secrets.ts). */
    bmcPasswordSealed: p.text().nullable(),
    powerDriver: p.string(),
    switchId: p.uuid().nullable().index('node_switch_id_idx'),
    switchPort: p.string(),
    provisionState: p.string().$type<ProvisionState>(),
    maintenance: p.boolean(),
    maintenanceReason: p.text(),
    lastError: p.text(),
    instanceId: p.uuid().nullable(),
  },
  uniques: [{ name: 'node_switch_port_key', properties: ['switchId', 'switchPort'] }],
});

export class Node extends NodeSchema.class {}
NodeSchema.setClass(Node);
