import type { EntityManager } from '@mikro-orm/sql';
import type * as pb from '../../../build/gen/ingot/v1/task.ts';
import type { TaskBusEvent } from '../conductor/task-bus.ts';
import type { TaskQueue } from '../conductor/task-queue.ts';
import { Wakeup } from '../conductor/wakeup.ts';
import {
  ControllerShuttingDownError,
  ImageNotActiveError,
  ImageTooLargeError,
} from '../domain/agent-errors.ts';
import { InvalidArgumentError, NotFoundError } from '../domain/errors.ts';
import { isId } from '../domain/formats.ts';
import { DISK_HINT } from '../domain/inventory.ts';
import { isDiskPath, isFinished, type TaskKind, type TaskSpecBody } from '../domain/tasks.ts';
import { Violations } from '../domain/violations.ts';
import type { ImageCaptures } from '../images/image-captures.ts';
import { findImage } from '../images/images.ts';
import { Node } from '../store/entities/node.ts';
import { Task, TaskEvent } from '../store/entities/task.ts';
import { findByRef, listResources, type Row } from '../store/resource-repository.ts';
import { ADMIN_ONLY } from './auth.ts';
import type { Handlers, Method, ServerStreamMethod } from './rpc.ts';
import { progressToProto, recordedEventToProto, TASK_STATE_FROM_PB, taskToProto } from './task-mappers.ts';

/** How often a watcher re-reads the task, for changes made by other controllers. @default 1 s */
const WATCH_POLL_MS = 1000;

async function nodeNames(em: EntityManager, tasks: Task[]): Promise<Map<string, string>> {
  const nodes = await em.find(
    Node,
    { id: { $in: [...new Set(tasks.map((t) => t.nodeId))] } },
    { fields: ['id', 'name'] },
  );
  return new Map(nodes.map((n) => [n.id, n.name]));
}

async function toProto(em: EntityManager, tasks: Task[]): Promise<pb.Task[]> {
  const names = await nodeNames(em, tasks);
  return tasks.map((t) => taskToProto(t, names));
}

async function findTask(em: EntityManager, id: string): Promise<Task> {
  const trimmed = id.trim();
  if (!isId(trimmed)) throw new InvalidArgumentError([{ field: 'id', description: 'must be a task id' }]);
  const task = await em.findOne(Task, { id: trimmed.toLowerCase() });
  if (!task) throw new NotFoundError('task', trimmed);
  return task;
}

/**
 * Validates a TaskSpec: exactly one kind, its fields, and for deploys an ACTIVE image that fits the
 * disk. A capture is returned as given: ImageCaptures checks it (and may open a capture port for it).
 */
async function resolveSpec(
  em: EntityManager,
  queue: TaskQueue,
  node: Node,
  spec: pb.TaskSpec | undefined,
): Promise<{ kind: TaskKind; body: TaskSpecBody; imageId?: string } | { capture: pb.CaptureSpec }> {
  const violations = new Violations();
  const set = spec
    ? (['deploy', 'wipe', 'inspect', 'reboot', 'poweroff', 'capture'] as const).filter((k) => spec[k])
    : [];
  if (set.length !== 1) {
    violations.add('spec', 'must set exactly one of deploy, wipe, inspect, reboot, poweroff, capture');
    violations.throwIfAny();
  }
  const kind = set[0] as TaskKind;
  const s = spec as pb.TaskSpec;
  if (s.capture) return { capture: s.capture };
  if (s.deploy) {
    if (!isDiskPath(s.deploy.disk)) violations.add('spec.deploy.disk', DISK_HINT);
    if (!s.deploy.image.trim()) violations.add('spec.deploy.image', 'is required (an image id or name)');
    violations.throwIfAny();
    const image = await findImage(em, { tokenId: '', role: 'admin' }, s.deploy.image, {
      field: 'spec.deploy.image',
    });
    if (image.status !== 'active') throw new ImageNotActiveError(image.name, image.status);
    const disk = (await queue.hardwareOf(em, node.id))?.inventory.disks.find(
      (d) => d.path === s.deploy?.disk,
    );
    if (disk && image.virtualSizeBytes > disk.sizeBytes) {
      throw new ImageTooLargeError(image.name, image.virtualSizeBytes, disk.path, disk.sizeBytes);
    }
    return {
      kind,
      body: { deploy: { image: image.id, disk: s.deploy.disk, sha256: image.sha256 } },
      imageId: image.id,
    };
  }
  if (s.wipe) {
    if (!isDiskPath(s.wipe.disk)) violations.add('spec.wipe.disk', DISK_HINT);
    violations.throwIfAny();
    return { kind, body: { wipe: { disk: s.wipe.disk, full: s.wipe.full } } };
  }
  return { kind, body: { [kind]: {} } };
}

/** TaskService: operators' view of agent tasks, and WatchTask for live progress. */
export function taskHandlers(queue: TaskQueue, captures: ImageCaptures): Handlers {
  const create: Method<pb.CreateTaskRequest, pb.Task> = {
    access: ADMIN_ONLY,
    async handle(req, { em, caller }) {
      const node = await findByRef(em, 'node', Node, req.node);
      const resolved = await resolveSpec(em, queue, node, req.spec);
      const task =
        'capture' in resolved
          ? await captures.createTask(em, caller, node.id, resolved.capture)
          : await queue.create(em, {
              nodeId: node.id,
              kind: resolved.kind,
              spec: resolved.body,
              ...(resolved.imageId ? { imageId: resolved.imageId } : {}),
            });
      return taskToProto(task, new Map([[node.id, node.name]]));
    },
  };
  const get: Method<pb.GetTaskRequest, pb.Task> = {
    access: ADMIN_ONLY,
    async handle(req, { em }) {
      return (await toProto(em, [await findTask(em, req.id)]))[0] as pb.Task;
    },
  };
  const list: Method<pb.ListTasksRequest, pb.ListTasksResponse> = {
    access: ADMIN_ONLY,
    async handle(req, { em }) {
      const where: Record<string, unknown> = {};
      if (req.node.trim()) where.nodeId = (await findByRef(em, 'node', Node, req.node)).id;
      if (req.state) {
        const state = TASK_STATE_FROM_PB.get(req.state);
        if (!state) throw new InvalidArgumentError([{ field: 'state', description: 'is not a task state' }]);
        where.state = state;
      }
      const listing = await listResources(em, Task as never, req, where);
      return {
        tasks: await toProto(em, listing.rows as unknown as Task[]),
        nextPageToken: listing.nextPageToken,
      };
    },
  };
  const cancel: Method<pb.CancelTaskRequest, pb.Task> = {
    access: ADMIN_ONLY,
    async handle(req, { em }) {
      const task = await queue.cancel(em, await findTask(em, req.id));
      return (await toProto(em, [task]))[0] as pb.Task;
    },
  };
  const events: Method<pb.ListTaskEventsRequest, pb.ListTaskEventsResponse> = {
    access: ADMIN_ONLY,
    async handle(req, { em }) {
      const task = await findTask(em, req.id);
      const listing = await listResources<Row>(em, TaskEvent as never, req, { taskId: task.id });
      return {
        events: (listing.rows as unknown as TaskEvent[]).map(recordedEventToProto),
        nextPageToken: listing.nextPageToken,
      };
    },
  };
  const watch: ServerStreamMethod<pb.WatchTaskRequest, pb.TaskEvent> = {
    access: ADMIN_ONLY,
    stream: 'server',
    async handle(req, { em, signal }, send) {
      const found = await findTask(em, req.id);
      const pending: TaskBusEvent[] = [];
      const wakeup = new Wakeup();
      // Subscribe before reading the task, so nothing that happens in between is missed.
      const unsubscribe = queue.bus.watchTask(found.id, (event) => {
        pending.push(event);
        wakeup.wake();
      });
      const ending = AbortSignal.any([signal, queue.bus.closing]);
      try {
        const names = await nodeNames(em, [found]);
        const read = () => em.fork().findOneOrFail(Task, { id: found.id });
        let last = await read();
        // The newest progress sent, from the bus or the database, so that the poll never repeats an older one.
        let progressTime = last.progress?.time ?? '';
        await send({ taskId: last.id, time: new Date(), task: taskToProto(last, names) });
        while (!isFinished(last.state)) {
          if (pending.length === 0) await wakeup.pause(WATCH_POLL_MS, ending);
          if (signal.aborted) return;
          if (queue.bus.closing.aborted) throw new ControllerShuttingDownError();
          const batch = pending.splice(0);
          if (batch.length === 0) {
            const fresh = await read();
            if (fresh.state !== last.state || fresh.cancelRequested !== last.cancelRequested) {
              last = fresh;
              await send({ taskId: last.id, time: new Date(), task: taskToProto(last, names) });
            } else if (fresh.progress && fresh.progress.time > progressTime) {
              last = fresh;
              progressTime = fresh.progress.time;
              await send({
                taskId: last.id,
                time: new Date(),
                progress: progressToProto(last.id, fresh.progress),
              });
            }
            continue;
          }
          for (const event of batch) {
            if (event.kind === 'progress') {
              if (event.progress.time > progressTime) progressTime = event.progress.time;
              await send({
                taskId: found.id,
                time: new Date(),
                progress: progressToProto(found.id, event.progress),
              });
            } else {
              last = event.task;
              await send({ taskId: found.id, time: new Date(), task: taskToProto(last, names) });
              if (isFinished(last.state)) break;
            }
          }
        }
      } finally {
        unsubscribe();
      }
    },
  };
  return {
    CreateTask: create,
    GetTask: get,
    ListTasks: list,
    CancelTask: cancel,
    WatchTask: watch,
    ListTaskEvents: events,
  } as Handlers;
}
