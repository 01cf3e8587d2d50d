import * as pb from '../../../build/gen/ingot/v1/task.ts';
import type {
  HardwareBody,
  TaskErrorBody,
  TaskKind,
  TaskOutcomeBody,
  TaskProgressBody,
  TaskState,
} from '../domain/tasks.ts';
import type { Task, TaskEvent } from '../store/entities/task.ts';

export const TASK_KIND_TO_PB: Record<TaskKind, pb.TaskKind> = {
  deploy: pb.TaskKind.TASK_KIND_DEPLOY,
  wipe: pb.TaskKind.TASK_KIND_WIPE,
  inspect: pb.TaskKind.TASK_KIND_INSPECT,
  reboot: pb.TaskKind.TASK_KIND_REBOOT,
  poweroff: pb.TaskKind.TASK_KIND_POWEROFF,
  capture: pb.TaskKind.TASK_KIND_CAPTURE,
};

export const TASK_STATE_TO_PB: Record<TaskState, pb.TaskState> = {
  queued: pb.TaskState.TASK_STATE_QUEUED,
  running: pb.TaskState.TASK_STATE_RUNNING,
  succeeded: pb.TaskState.TASK_STATE_SUCCEEDED,
  failed: pb.TaskState.TASK_STATE_FAILED,
  cancelled: pb.TaskState.TASK_STATE_CANCELLED,
};

export const TASK_STATE_FROM_PB = new Map<pb.TaskState, TaskState>(
  Object.entries(TASK_STATE_TO_PB).map(([k, v]) => [v, k as TaskState]),
);

export function progressToProto(taskId: string, p: TaskProgressBody): pb.TaskProgress {
  return {
    taskId,
    phase: p.phase,
    bytesDone: p.bytesDone,
    bytesTotal: p.bytesTotal,
    rateBytesPerSecond: p.rateBytesPerSecond,
    time: new Date(p.time),
    message: p.message,
  };
}

export function errorToProto(e: TaskErrorBody): pb.TaskError {
  return { reason: e.reason, message: e.message, metadata: e.metadata };
}

export function hardwareToProto(h: HardwareBody): pb.HardwareInventory {
  return { ...h, disks: h.disks.map((d) => ({ ...d })), nics: h.nics.map((n) => ({ ...n })) };
}

export function outcomeToProto(o: TaskOutcomeBody): pb.TaskOutcome {
  return {
    sha256: o.sha256,
    bytesWritten: o.bytesWritten,
    inventory: o.inventory ? hardwareToProto(o.inventory) : undefined,
    bytesSent: o.bytesSent ?? 0,
    bytesRead: o.bytesRead ?? 0,
    unreadable: (o.unreadable ?? []).map((r) => ({ ...r })),
    partitionTable: o.partitionTable
      ? { ...o.partitionTable, warnings: [...o.partitionTable.warnings] }
      : undefined,
  };
}

/** A task as the API shows it; `nodeNames` maps node ids to names. */
export function taskToProto(task: Task, nodeNames: ReadonlyMap<string, string>): pb.Task {
  const { spec } = task;
  return {
    id: task.id,
    nodeId: task.nodeId,
    nodeName: nodeNames.get(task.nodeId) ?? '',
    kind: TASK_KIND_TO_PB[task.kind],
    spec: {
      deploy: spec.deploy ? { image: spec.deploy.image, disk: spec.deploy.disk } : undefined,
      wipe: spec.wipe ? { disk: spec.wipe.disk, full: spec.wipe.full } : undefined,
      inspect: spec.inspect ? {} : undefined,
      reboot: spec.reboot ? {} : undefined,
      poweroff: spec.poweroff ? {} : undefined,
      capture: spec.capture ? { ...spec.capture } : undefined,
    },
    state: TASK_STATE_TO_PB[task.state],
    attempt: task.attempt,
    cancelRequested: task.cancelRequested,
    progress: task.progress ? progressToProto(task.id, task.progress) : undefined,
    outcome: task.outcome ? outcomeToProto(task.outcome) : undefined,
    error: task.error ? errorToProto(task.error) : undefined,
    createTime: task.createdAt,
    startTime: task.startedAt ?? undefined,
    endTime: task.endedAt ?? undefined,
    updateTime: task.updatedAt,
  };
}

export function recordedEventToProto(event: TaskEvent): pb.RecordedTaskEvent {
  return {
    time: event.time,
    state: event.state ? TASK_STATE_TO_PB[event.state] : pb.TaskState.TASK_STATE_UNSPECIFIED,
    progress: event.progress ? progressToProto(event.taskId, event.progress) : undefined,
    error: event.error ? errorToProto(event.error) : undefined,
  };
}
