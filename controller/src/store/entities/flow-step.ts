import { defineEntity, p } from '@mikro-orm/core';
import type { StepState } from '../../domain/flows.ts';
import { newId } from '../ids.ts';

/** One step of a flow (an instance's deploy or delete, a node's capture), recorded when it starts and again when it ends. */
export const FlowStepSchema = defineEntity({
  name: 'FlowStep',
  tableName: 'flow_step',
  properties: {
    id: p
      .uuid()
      .primary()
      .onCreate(() => newId()),
    /** The instance's or the capture's id. */
    subjectId: p.uuid().index('flow_step_subject_id_idx'),
    /** `deploy`, `delete` or `capture`. */
    flow: p.string(),
    name: p.string(),
    state: p.string().$type<StepState>(),
    startTime: p.datetime(),
    endTime: p.datetime().nullable(),
    message: p.text(),
    /** The controller that ran it. */
    owner: p.string(),
  },
});

export class FlowStep extends FlowStepSchema.class {}
FlowStepSchema.setClass(FlowStep);
