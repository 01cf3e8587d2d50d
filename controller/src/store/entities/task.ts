import { defineEntity, p } from '@mikro-orm/core';
import type {
  TaskErrorBody,
  TaskKind,
  TaskOutcomeBody,
  TaskProgressBody,
  TaskSpecBody,
  TaskState,
} from '../../domain/tasks.ts';
import { newId } from '../ids.ts';
import { identity } from './common.ts';

/**
 * Work for a node's agent. A node runs one task at a time, oldest first;
 * `state` moves queued → running → succeeded | failed | cancelled, each
 * step a conditional update so that several controllers never send or
 * finish a task twice.
 */
export const TaskSchema = defineEntity({
  name: 'Task',
  tableName: 'task',
  properties: {
    ...identity,
    nodeId: p.uuid(),
    kind: p.string().$type<TaskKind>(),
    spec: p.json<TaskSpecBody>(),
    /** The image a deploy writes, so that the image cannot be deleted meanwhile. */
    imageId: p.uuid().nullable().index('task_image_id_idx'),
    state: p.string().$type<TaskState>(),
    /** How many times the task was sent to an agent. */
    attempt: p.integer(),
    cancelRequested: p.boolean(),
    progress: p.json<TaskProgressBody>().nullable(),
    outcome: p.json<TaskOutcomeBody>().nullable(),
    error: p.json<TaskErrorBody>().nullable(),
    startedAt: p.datetime().nullable(),
    endedAt: p.datetime().nullable(),
  },
  indexes: [{ name: 'task_node_id_state_idx', properties: ['nodeId', 'state'] }],
});

export class Task extends TaskSchema.class {}
TaskSchema.setClass(Task);

/** What a task went through: state changes and progress samples, for `ListTaskEvents`. */
export const TaskEventSchema = defineEntity({
  name: 'TaskEvent',
  tableName: 'task_event',
  properties: {
    id: p
      .uuid()
      .primary()
      .onCreate(() => newId()),
    taskId: p.uuid().index('task_event_task_id_idx'),
    time: p.datetime(),
    /** Set for state changes. */
    state: p.string().$type<TaskState>().nullable(),
    progress: p.json<TaskProgressBody>().nullable(),
    error: p.json<TaskErrorBody>().nullable(),
  },
});

export class TaskEvent extends TaskEventSchema.class {}
TaskEventSchema.setClass(TaskEvent);
