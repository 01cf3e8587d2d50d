/**
 * Runs one task at a time per key (a BMC, a node), in arrival order.
 * Waiting is abortable; an aborted waiter never lets the next task start
 * before the running one has finished.
 */
export class KeyedSerialQueue {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    this.#tails.set(key, tail);
    try {
      await abortable(previous, signal);
      return await task();
    } finally {
      release();
      // Forget the key once nobody queued behind us, so the map does not grow with every BMC ever seen.
      void tail.then(() => {
        if (this.#tails.get(key) === tail) this.#tails.delete(key);
      });
    }
  }

  /** Keys with a task running or waiting. */
  get busyKeys(): number {
    return this.#tails.size;
  }
}

/** A counting semaphore with a FIFO wait list and abortable waits. */
export class Semaphore {
  readonly limit: number;
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new Error(`semaphore limit must be ≥ 1, got ${limit}`);
    this.limit = limit;
  }

  get active(): number {
    return this.#active;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.#active < this.limit) {
      this.#active++;
      return this.#releaser();
    }
    signal?.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.#waiting.indexOf(grant);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(signal?.reason);
      };
      this.#waiting.push(grant);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    return this.#releaser();
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      // The slot passes straight to the next waiter; active stays the same.
      if (next) next();
      else this.#active--;
    };
  }
}

/**
 * The BMC command queue: at most one command per BMC at a time (BMCs
 * misbehave under concurrent sessions) and at most `limit` commands in
 * flight overall. A command takes a global slot only once it is its BMC's
 * turn, so commands piling up behind one slow BMC never hold slots that
 * other BMCs could use.
 */
export class BmcQueue {
  readonly #perBmc = new KeyedSerialQueue();
  readonly #global: Semaphore;

  constructor(limit: number) {
    this.#global = new Semaphore(limit);
  }

  get limit(): number {
    return this.#global.limit;
  }

  /** Commands running right now. */
  get active(): number {
    return this.#global.active;
  }

  run<T>(bmc: string, task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.#perBmc.run(
      bmc,
      async () => {
        const release = await this.#global.acquire(signal);
        try {
          return await task();
        } finally {
          release();
        }
      },
      signal,
    );
  }
}

function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
