import type { EntityManager } from '@mikro-orm/sql';
import type * as pb from '../../../build/gen/ingot/v1/instance.ts';
import { InstanceState } from '../../../build/gen/ingot/v1/instance.ts';
import type { TaskProgressBody } from '../domain/tasks.ts';
import { FlowStep } from '../store/entities/flow-step.ts';
import { Host } from '../store/entities/host.ts';
import type { Instance } from '../store/entities/instance.ts';
import { Network } from '../store/entities/network.ts';
import { Node } from '../store/entities/node.ts';
import { Task } from '../store/entities/task.ts';

const STATES: Record<string, InstanceState> = {
  scheduled: InstanceState.INSTANCE_STATE_SCHEDULED,
  deploying: InstanceState.INSTANCE_STATE_DEPLOYING,
  active: InstanceState.INSTANCE_STATE_ACTIVE,
  deleting: InstanceState.INSTANCE_STATE_DELETING,
  error: InstanceState.INSTANCE_STATE_ERROR,
};

export function progressToProto(p: TaskProgressBody): pb.InstanceProgress {
  return {
    phase: p.phase,
    bytesDone: p.bytesDone,
    bytesTotal: p.bytesTotal,
    rateBytesPerSecond: p.rateBytesPerSecond,
    message: p.message,
  };
}

/** Instances as the API shows them: host and network names, the flow's steps and its task's latest progress. */
export async function instancesToProto(em: EntityManager, rows: Instance[]): Promise<pb.Instance[]> {
  const ids = (kind: string) => rows.filter((r) => r.hostKind === kind).map((r) => r.hostId);
  const taskIds = rows.flatMap((r) => (r.taskId ? [r.taskId] : []));
  const networkIds = rows.flatMap((r) => (r.networkId ? [r.networkId] : []));
  const [nodes, hosts, networks, tasks, steps] = await Promise.all([
    em.find(Node, { id: { $in: ids('node') } }, { fields: ['id', 'name'] }),
    em.find(Host, { id: { $in: ids('host') } }, { fields: ['id', 'name'] }),
    em.find(Network, { id: { $in: networkIds } }, { fields: ['id', 'name'] }),
    em.find(Task, { id: { $in: taskIds } }, { fields: ['id', 'state', 'progress'] }),
    em.find(
      FlowStep,
      { subjectId: { $in: rows.map((r) => r.id) } },
      { orderBy: { startTime: 'asc', id: 'asc' } },
    ),
  ]);
  const names = new Map<string, string>([...nodes, ...hosts, ...networks].map((h) => [h.id, h.name]));
  const taskById = new Map(tasks.map((t) => [t.id, t]));
  return rows.map((i) => {
    const task = i.taskId ? taskById.get(i.taskId) : undefined;
    // Only the running flow's steps: an earlier flow's (a deploy before this delete) are history.
    const flowSteps = steps.filter((s) => s.subjectId === i.id && (!i.flow || s.flow === i.flow));
    return {
      id: i.id,
      name: i.name,
      projectId: i.projectId,
      flavorId: i.flavorId,
      image: i.image,
      hints: i.hints,
      availabilityZone: i.availabilityZone,
      state: STATES[i.state] ?? InstanceState.INSTANCE_STATE_UNSPECIFIED,
      reason: i.reason,
      hostKind: i.hostKind,
      hostId: i.hostId,
      hostName: names.get(i.hostId) ?? '',
      vcpus: i.vcpus,
      ramMb: i.ramMb,
      diskGb: i.diskGb,
      createTime: i.createdAt,
      updateTime: i.updatedAt,
      networkId: i.networkId ?? '',
      networkName: i.networkId ? (names.get(i.networkId) ?? '') : '',
      step: i.step,
      progress: task?.state === 'running' && task.progress ? progressToProto(task.progress) : undefined,
      steps: flowSteps.map(stepToProto),
      retries: i.retries,
    };
  });
}

export function stepToProto(s: FlowStep): pb.InstanceStep {
  return {
    flow: s.flow,
    name: s.name,
    state: s.state,
    startTime: s.startTime,
    endTime: s.endTime ?? undefined,
    message: s.message,
    controller: s.owner,
  };
}
