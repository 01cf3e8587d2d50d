import { defineEntity, p } from '@mikro-orm/core';
import type { FlowKind } from '../../domain/flows.ts';
import { identity } from './common.ts';

/** Where an instance is in its life; the provisioning flow adds the steps in between. */
export type InstanceState = 'scheduled' | 'deploying' | 'active' | 'deleting' | 'error';

/**
 * A tenant's instance and its claim: a whole bare-metal node, or a share of
 * a hypervisor host's capacity (the resources are copied from the flavor so
 * the claim stays right when the flavor changes).
 */
export const InstanceSchema = defineEntity({
  name: 'Instance',
  tableName: 'instance',
  properties: {
    ...identity,
    name: p.string(),
    projectId: p.uuid().index('instance_project_id_idx'),
    flavorId: p.uuid(),
    image: p.string(),
    hints: p.json<Record<string, string>>(),
    availabilityZone: p.string(),
    state: p.string().$type<InstanceState>(),
    reason: p.text(),
    hostKind: p.string().$type<'node' | 'host'>(),
    /** The node's or hypervisor host's id. */
    hostId: p.uuid().index('instance_host_id_idx'),
    vcpus: p.integer(),
    ramMb: p.integer(),
    diskGb: p.integer(),
    /** The project network a bare-metal instance's port goes on. */
    networkId: p.uuid().nullable(),
    /** The flow running on the instance's node; null when none (ACTIVE, ERROR, hypervisor placements). */
    flow: p.string().$type<FlowKind>().nullable().index('instance_flow_idx'),
    /** The step running now, or the one that failed. */
    step: p.string().default(''),
    /** Power cycles spent on retries in the current flow. */
    retries: p.integer().default(0),
    /** The agent task the current step waits for. */
    taskId: p.uuid().nullable(),
    /** Delete: zero the whole disk. */
    wipeFull: p.boolean().default(false),
    /** The image a bare-metal instance is deployed with (`image` is the name or id the caller gave). */
    imageId: p.uuid().nullable(),
    /** The controller driving the flow, until `leaseExpiresAt`; another may take over after. */
    leaseOwner: p.string().nullable(),
    leaseExpiresAt: p.datetime().nullable(),
  },
  uniques: [{ name: 'instance_project_name_key', properties: ['projectId', 'name'] }],
});

export class Instance extends InstanceSchema.class {}
InstanceSchema.setClass(Instance);
