import type { EntityManager } from '@mikro-orm/sql';
import * as pb from '../../../build/gen/ingot/v1/capture.ts';
import type { Capture } from '../store/entities/capture.ts';
import { FlowStep } from '../store/entities/flow-step.ts';
import { Image } from '../store/entities/image.ts';
import { Node } from '../store/entities/node.ts';
import { Task } from '../store/entities/task.ts';
import { progressToProto, stepToProto } from './instance-mappers.ts';
import { outcomeToProto } from './task-mappers.ts';

const STATES: Record<Capture['state'], pb.CaptureState> = {
  running: pb.CaptureState.CAPTURE_STATE_RUNNING,
  succeeded: pb.CaptureState.CAPTURE_STATE_SUCCEEDED,
  failed: pb.CaptureState.CAPTURE_STATE_FAILED,
};

/** A capture as the API shows it: node and image names, its steps, its task's latest progress. */
export async function captureToProto(em: EntityManager, c: Capture): Promise<pb.Capture> {
  const [node, image, task, steps] = await Promise.all([
    em.findOne(Node, { id: c.nodeId }, { fields: ['name'] }),
    c.imageId ? em.findOne(Image, { id: c.imageId }, { fields: ['name'] }) : null,
    c.taskId ? em.findOne(Task, { id: c.taskId }, { fields: ['state', 'progress'] }) : null,
    em.find(FlowStep, { subjectId: c.id }, { orderBy: { startTime: 'asc', id: 'asc' } }),
  ]);
  return {
    id: c.id,
    nodeId: c.nodeId,
    nodeName: node?.name ?? '',
    imageId: c.imageId ?? '',
    imageName: image?.name ?? '',
    spec: { ...c.spec },
    powerOff: c.powerOff,
    state: STATES[c.state],
    step: c.step,
    steps: steps.map(stepToProto),
    progress: task?.state === 'running' && task.progress ? progressToProto(task.progress) : undefined,
    reason: c.reason,
    outcome: c.outcome ? outcomeToProto(c.outcome) : undefined,
    taskId: c.taskId ?? '',
    createTime: c.createdAt,
    updateTime: c.updatedAt,
  };
}
