import type { TaskProgressBody } from '../domain/tasks.ts';
import type { Task } from '../store/entities/task.ts';

/** What a watcher of one task hears. */
export type TaskBusEvent = { kind: 'progress'; progress: TaskProgressBody } | { kind: 'changed'; task: Task };

type Listener<T> = (event: T) => void;

/**
 * In-process fan-out, so a progress report reaches a watching client as soon
 * as the agent's stream delivers it, without a database round trip. It is
 * only a shortcut: the database stays the truth, and watchers and agent
 * sessions also poll it, which is how controllers sharing one database
 * hear about each other's changes.
 */
export class TaskBus {
  readonly #tasks = new Map<string, Set<Listener<TaskBusEvent>>>();
  readonly #nodes = new Map<string, Set<Listener<void>>>();
  readonly #closing = new AbortController();

  /** Aborted when the controller shuts down: long-lived streams end so that shutdown need not wait for them. */
  get closing(): AbortSignal {
    return this.#closing.signal;
  }

  close(): void {
    this.#closing.abort(new Error('the controller is shutting down'));
  }

  /** Listens to one task; returns the unsubscribe function. */
  watchTask(taskId: string, listener: Listener<TaskBusEvent>): () => void {
    return add(this.#tasks, taskId, listener);
  }

  publish(taskId: string, event: TaskBusEvent): void {
    for (const listener of this.#tasks.get(taskId) ?? []) listener(event);
  }

  /** Called when the node's tasks changed (created, cancelled): its agent session dispatches again. */
  onNodeChanged(nodeId: string, listener: Listener<void>): () => void {
    return add(this.#nodes, nodeId, listener);
  }

  nodeChanged(nodeId: string): void {
    for (const listener of this.#nodes.get(nodeId) ?? []) listener();
  }
}

function add<T>(map: Map<string, Set<Listener<T>>>, key: string, listener: Listener<T>): () => void {
  let set = map.get(key);
  if (!set) {
    set = new Set();
    map.set(key, set);
  }
  set.add(listener);
  return () => {
    set.delete(listener);
    if (set.size === 0 && map.get(key) === set) map.delete(key);
  };
}
