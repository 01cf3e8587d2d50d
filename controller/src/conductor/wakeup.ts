/**
 * A pause that an event can cut short: `pause(ms)` resolves after `ms`, or at once when `wake()` is
 * called meanwhile or `signal` aborts. Watchers and waiting steps sleep on it between looks at the
 * database, and the in-process buses wake them.
 */
export class Wakeup {
  #wake: (() => void) | undefined;

  wake(): void {
    this.#wake?.();
  }

  pause(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
  }
}
