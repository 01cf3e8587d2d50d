import type { TaskProgressBody } from '../domain/tasks.ts';

/** What a watcher of one instance hears: the row changed (state, step, deleted), or a progress report. */
export type InstanceBusEvent = { kind: 'changed' } | { kind: 'progress'; progress: TaskProgressBody };

type Listener = (event: InstanceBusEvent) => void;

/**
 * In-process fan-out of instance changes to WatchInstance streams. A
 * shortcut only, like the TaskBus: watchers also poll the database, which
 * is how they hear of flows another controller drives.
 */
export class InstanceBus {
  readonly #listeners = new Map<string, Set<Listener>>();

  /** Listens to one instance; returns the unsubscribe function. */
  watch(instanceId: string, listener: Listener): () => void {
    let set = this.#listeners.get(instanceId);
    if (!set) {
      set = new Set();
      this.#listeners.set(instanceId, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.#listeners.delete(instanceId);
    };
  }

  publish(instanceId: string, event: InstanceBusEvent): void {
    for (const listener of this.#listeners.get(instanceId) ?? []) listener(event);
  }
}
