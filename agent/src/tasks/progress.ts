import type { TaskProgress } from '../../../build/gen/ingot/v1/task.ts';

/** At most one report per this interval, except phase changes and messages. @default 250 ms (4 a second) */
export const PROGRESS_INTERVAL_MS = 250;
/** The rate is measured over this window. @default 2 s */
const RATE_WINDOW_MS = 2000;
/** Byte counts are sampled for the rate at most this often, so that a call per chunk stays cheap. @default 100 ms */
const SAMPLE_EVERY_MS = 100;

/**
 * Turns a task's frequent byte counts into at most four reports a second,
 * with a write rate over the last two seconds. A phase change or a message
 * is sent at once; the latest count is never lost, it goes out at the end of
 * the interval.
 */
export class ProgressReporter {
  readonly #taskId: string;
  readonly #send: (progress: TaskProgress) => void;
  readonly #intervalMs: number;
  readonly #samples: { at: number; bytes: number }[] = [];
  #phase = '';
  #lastSent = 0;
  #timer: NodeJS.Timeout | undefined;
  #latest: TaskProgress | undefined;

  constructor(taskId: string, send: (progress: TaskProgress) => void, intervalMs = PROGRESS_INTERVAL_MS) {
    this.#taskId = taskId;
    this.#send = send;
    this.#intervalMs = intervalMs;
  }

  /** The last report made, for re-sending after a reconnect. */
  get latest(): TaskProgress | undefined {
    return this.#latest;
  }

  update(phase: string, bytesDone = 0, bytesTotal = 0, message = ''): void {
    const now = Date.now();
    const urgent = phase !== this.#phase || message !== '';
    // Called for every chunk written: while a report is scheduled, only remember the count.
    if (!urgent && this.#timer && this.#latest) {
      this.#latest.bytesDone = bytesDone;
      return;
    }
    if (phase !== this.#phase) {
      this.#phase = phase;
      this.#samples.length = 0;
    }
    if (now - (this.#samples.at(-1)?.at ?? 0) >= SAMPLE_EVERY_MS) {
      this.#samples.push({ at: now, bytes: bytesDone });
      while (this.#samples.length > 2 && now - (this.#samples[1]?.at ?? now) > RATE_WINDOW_MS) {
        this.#samples.shift();
      }
    }
    const first = this.#samples[0] ?? { at: now, bytes: bytesDone };
    const seconds = (now - first.at) / 1000;
    const rate = seconds > 0 ? Math.max(0, Math.round((bytesDone - first.bytes) / seconds)) : 0;
    this.#latest = {
      taskId: this.#taskId,
      phase,
      bytesDone,
      bytesTotal,
      rateBytesPerSecond: rate,
      time: new Date(now),
      message,
    };
    if (urgent || now - this.#lastSent >= this.#intervalMs) {
      this.#flush();
    } else {
      this.#timer = setTimeout(() => this.#flush(), this.#intervalMs - (now - this.#lastSent));
    }
  }

  /** Sends the latest count now (e.g. at the end of a task) and stops the timer. */
  close(): void {
    if (this.#timer) this.#flush();
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!this.#latest) return;
    this.#lastSent = Date.now();
    this.#send({ ...this.#latest, time: new Date() });
  }
}
