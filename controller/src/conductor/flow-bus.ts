import type { TaskProgressBody } from '../domain/tasks.ts';
import { Wakeup } from './wakeup.ts';

/** What a watcher of one flow's subject (an instance, a capture) hears: the row changed (state, step, deleted), or a progress report. */
export type FlowBusEvent = { kind: 'changed' } | { kind: 'progress'; progress: TaskProgressBody };

type Listener = (event: FlowBusEvent) => void;

/**
 * In-process fan-out of instance and capture changes to WatchInstance and
 * WatchCapture streams, keyed by the subject's id. A shortcut only, like the
 * TaskBus: watchers also poll the database, which is how they hear of flows
 * another controller drives.
 */
export class FlowBus {
  readonly #listeners = new Map<string, Set<Listener>>();

  /** Listens to one subject; returns the unsubscribe function. */
  watch(subjectId: string, listener: Listener): () => void {
    let set = this.#listeners.get(subjectId);
    if (!set) {
      set = new Set();
      this.#listeners.set(subjectId, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.#listeners.delete(subjectId);
    };
  }

  publish(subjectId: string, event: FlowBusEvent): void {
    for (const listener of this.#listeners.get(subjectId) ?? []) listener(event);
  }

  /**
   * Queues one subject's events for a watch stream: subscribe before the
   * first read, so that nothing in between is missed.
   */
  subscribe(subjectId: string): FlowSubscription {
    const pending: FlowBusEvent[] = [];
    const wakeup = new Wakeup();
    const close = this.watch(subjectId, (event) => {
      pending.push(event);
      wakeup.wake();
    });
    return {
      take: () => pending.splice(0),
      wait: async (ms, signal) => {
        if (pending.length === 0) await wakeup.pause(ms, signal);
      },
      close,
    };
  }
}

/** A watch's queue of one subject's events. */
export interface FlowSubscription {
  /** The events since the last take, oldest first. */
  take(): FlowBusEvent[];
  /** Returns at once when events are queued, else after the next event, `ms`, or `signal`. */
  wait(ms: number, signal: AbortSignal): Promise<void>;
  close(): void;
}
