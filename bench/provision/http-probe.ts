/**
 * How quickly the controller answers HTTP while a wave runs: GET /healthz, one request at a time,
 * every `intervalMs`. Nodes fetch their iPXE scripts from the same listener with a 5 s timeout
 * (tools/lab/virtual-node.ts), so a stall here is what makes a PXE boot give up. A request
 * still unanswered after `timeoutMs` counts as `timeoutMs` and as a timeout.
 */
export interface ProbeReport {
  requests: number;
  p50Ms: number;
  maxMs: number;
  /** Requests that took longer than 1 s, and that got no answer within the timeout. */
  over1s: number;
  timeouts: number;
}

export class HttpProbe {
  readonly #url: string;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #latenciesMs: number[] = [];
  #timeouts = 0;
  #running: Promise<void> | undefined;
  readonly #stop = new AbortController();

  constructor(url: string, opts: { intervalMs?: number; timeoutMs?: number } = {}) {
    this.#url = url;
    this.#intervalMs = opts.intervalMs ?? 250;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
  }

  start(): void {
    this.#running = this.#loop();
  }

  async stop(): Promise<ProbeReport> {
    this.#stop.abort();
    await this.#running;
    const sorted = [...this.#latenciesMs].sort((a, b) => a - b);
    return {
      requests: sorted.length,
      p50Ms: sorted[Math.floor(sorted.length / 2)] ?? Number.NaN,
      maxMs: sorted.at(-1) ?? Number.NaN,
      over1s: sorted.filter((ms) => ms > 1000).length,
      timeouts: this.#timeouts,
    };
  }

  async #loop(): Promise<void> {
    while (!this.#stop.signal.aborted) {
      const started = performance.now();
      try {
        const res = await fetch(this.#url, {
          signal: AbortSignal.any([this.#stop.signal, AbortSignal.timeout(this.#timeoutMs)]),
        });
        await res.arrayBuffer();
        this.#latenciesMs.push(performance.now() - started);
      } catch {
        if (this.#stop.signal.aborted) return;
        this.#timeouts++;
        this.#latenciesMs.push(this.#timeoutMs);
      }
      await new Promise((resolve) => setTimeout(resolve, this.#intervalMs));
    }
  }
}
