import { defineEntity, p } from '@mikro-orm/core';
import type { ProvisionState } from '../../domain/provision-state.ts';
import type { NetbootState } from '../../drivers/netboot/netboot.ts';
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
    /** The network the node's switch port is on, as last applied and read back; null until known. */
    networkId: p.uuid().nullable().index('node_network_id_idx'),
    /** The network Ingot is moving the port to; equals networkId once applied. */
    targetNetworkId: p.uuid().nullable().index('node_target_network_id_idx'),
    /** Why the last move failed; null after a successful one. */
    networkError: p.text().nullable(),
    /** When networkId was last confirmed on the switch. */
    networkTime: p.datetime().nullable(),
    /** Where the node is in netbooting (drivers/netboot/netboot.ts); null when it has no boot entry. */
    netbootState: p.string().$type<NetbootState>().nullable(),
    netbootTime: p.datetime().nullable(),
    /** The block device instances are deployed to. */
    rootDisk: p.string().default('/dev/sda'),
  },
  uniques: [{ name: 'node_switch_port_key', properties: ['switchId', 'switchPort'] }],
});

export class Node extends NodeSchema.class {}
NodeSchema.setClass(Node);
