import { defineEntity, p } from '@mikro-orm/core';
import type { ProvisionState } from '../../domain/provision-state.ts';
import type { StoredBmcOptions } from '../../drivers/power/bmc-options.ts';
import type { PowerState } from '../../drivers/power/power-driver.ts';
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
    /** What the BMC last reported; null until it was first asked. */
    powerState: p.string().$type<PowerState>().nullable(),
    powerStateTime: p.datetime().nullable(),
    /** What Ingot last asked for; null until a power command was given. */
    expectedPowerState: p.string().$type<PowerState>().nullable(),
    /** Since when the observed state differs from the expected one; null while they agree. */
    powerDriftTime: p.datetime().nullable(),
    /** The last BMC error the power sync saw; null after a successful read. */
    powerError: p.text().nullable(),
    /** Per-node BMC settings that differ from the defaults (drivers/power/bmc-options.ts). */
    bmcOptions: p.json<StoredBmcOptions>().nullable(),
  },
  uniques: [{ name: 'node_switch_port_key', properties: ['switchId', 'switchPort'] }],
});

export class Node extends NodeSchema.class {}
NodeSchema.setClass(Node);
