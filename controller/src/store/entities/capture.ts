import { defineEntity, p } from '@mikro-orm/core';
import type { ProvisionState } from '../../domain/provision-state.ts';
import type { CaptureSpecBody, TaskOutcomeBody } from '../../domain/tasks.ts';
import type { PowerState } from '../../drivers/power/power-driver.ts';
import { identity } from './common.ts';

export type CaptureState = 'running' | 'succeeded' | 'failed';

/**
 * A node's disk being captured into an image (or to an operator's
 * receiver): the capture flow's subject, with the node's state before it so
 * that the flow can put the node back.
 */
export const CaptureSchema = defineEntity({
  name: 'Capture',
  tableName: 'capture',
  properties: {
    ...identity,
    nodeId: p.uuid().index('capture_node_id_idx'),
    /** The image the bytes go to; null when they go to `spec.receiver` only. */
    imageId: p.uuid().nullable(),
    /** As given (the image ref left out); the task gets the controller's capture port as receiver. */
    spec: p.json<CaptureSpecBody>(),
    /** Power the node off at the end instead of restoring its power. */
    powerOff: p.boolean(),
    state: p.string().$type<CaptureState>(),
    /** `capture` while the flow runs; null once it ended. */
    flow: p.string().$type<'capture'>().nullable().index('capture_flow_idx'),
    step: p.string().default(''),
    retries: p.integer().default(0),
    taskId: p.uuid().nullable(),
    reason: p.text().default(''),
    outcome: p.json<TaskOutcomeBody>().nullable(),
    /** The node before the capture: where its port was, whether it was on, its provision state. */
    priorNetworkId: p.uuid().nullable(),
    priorPower: p.string().$type<PowerState>().nullable(),
    priorProvisionState: p.string().$type<ProvisionState>(),
    leaseOwner: p.string().nullable(),
    leaseExpiresAt: p.datetime().nullable(),
  },
});

export class Capture extends CaptureSchema.class {}
CaptureSchema.setClass(Capture);
