/** Latency samples in milliseconds, summarised by nearest-rank percentiles. */
export class Latencies {
  readonly #samples: number[] = [];

  add(ms: number): void {
    this.#samples.push(ms);
  }

  get count(): number {
    return this.#samples.length;
  }

  /** The p-th percentile (0 < p <= 100), nearest rank; NaN when empty. */
  percentile(p: number): number {
    if (this.#samples.length === 0) return Number.NaN;
    const sorted = [...this.#samples].sort((a, b) => a - b);
    const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
    return sorted[rank - 1] ?? Number.NaN;
  }

  get mean(): number {
    return this.#samples.reduce((sum, s) => sum + s, 0) / this.#samples.length;
  }

  get max(): number {
    return this.#samples.reduce((m, s) => Math.max(m, s), Number.NEGATIVE_INFINITY);
  }
}

/** `1.23ms`, `0.045ms`: three significant digits are plenty for a benchmark. */
export function ms(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  return `${value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(value >= 1 ? 2 : 3)}ms`;
}

/** Runs `worker` on `concurrency` callers at once; resolves when all are done. */
export async function concurrently(
  concurrency: number,
  worker: (caller: number) => Promise<void>,
): Promise<void> {
  await Promise.all(Array.from({ length: concurrency }, (_, i) => worker(i)));
}
