import type { EntityManager } from '@mikro-orm/sql';
import {
  type FlowKind,
  NODE_STATE_DURING,
  NODE_STATE_FAILED,
  type StepName,
  stepsOf,
} from '../domain/flows.ts';
import { Instance } from '../store/entities/instance.ts';
import { Node } from '../store/entities/node.ts';
import type { FlowSteps } from './flow-steps.ts';
import type { FlowDefinition } from './provisioner.ts';

/**
 * Instances' flows for the conductor: deploy (the instance goes ACTIVE at
 * its end) and delete (its last step releases the node and the instance
 * row). A failure puts the instance in ERROR and the node in `deploy
 * failed` / `clean failed`, its port on the service network.
 */
export function instanceFlows(steps: FlowSteps): FlowDefinition<Instance> {
  return {
    name: 'instance',
    entity: Instance,
    nodeIdOf: (instance) => instance.hostId,
    steps: (flow) => stepsOf(flow as FlowKind),
    run: (step, ctx) =>
      steps.run(step as StepName, {
        instance: ctx.subject,
        node: ctx.node,
        flow: ctx.flow as FlowKind,
        signal: ctx.signal,
        note: ctx.note,
      }),
    async started(tx: EntityManager, instance, node, flow, step) {
      await tx.nativeUpdate(
        Instance,
        { id: instance.id, flow: flow as FlowKind },
        { state: flow === 'deploy' ? 'deploying' : 'deleting', step, reason: '' },
      );
      await tx.nativeUpdate(Node, { id: node.id }, { provisionState: NODE_STATE_DURING[flow as FlowKind] });
    },
    async ended(tx, instance, node, flow, step) {
      // A delete's last step (release) removed the instance; a deploy's makes it ACTIVE.
      if (flow !== 'deploy') return;
      const done = await tx.nativeUpdate(
        Instance,
        { id: instance.id, flow: 'deploy', step },
        { state: 'active', flow: null, step: '', taskId: null, reason: '' },
      );
      if (done === 1)
        await tx.nativeUpdate(Node, { id: node.id }, { provisionState: 'active', lastError: '' });
    },
    makeSafe: (_instance, node, cause) => steps.makeNodeSafe(node, cause),
    async failed(tx, instance, node, flow, step, reason) {
      await tx.nativeUpdate(
        Instance,
        { id: instance.id, flow: flow as FlowKind },
        { state: 'error', reason, flow: null, step, leaseOwner: null, leaseExpiresAt: null },
      );
      if (node) {
        await tx.nativeUpdate(
          Node,
          { id: node.id },
          { provisionState: NODE_STATE_FAILED[flow as FlowKind], lastError: reason },
        );
      }
    },
  };
}
