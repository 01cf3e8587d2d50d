import { status } from '@grpc/grpc-js';

/** Per-method call counts and latency sums, exposed on the HTTP listener in Prometheus' text format. */
export class RpcMetrics {
  readonly #calls = new Map<string, { count: number; seconds: number }>();

  observe(method: string, code: status | 'OK', startedNs: bigint): void {
    const name = code === 'OK' ? 'OK' : (status[code] ?? String(code));
    const key = `${method}\u0000${name}`;
    const entry = this.#calls.get(key) ?? { count: 0, seconds: 0 };
    entry.count += 1;
    entry.seconds += Number(process.hrtime.bigint() - startedNs) / 1e9;
    this.#calls.set(key, entry);
  }

  render(): string {
    const lines = [
      '# HELP ingot_grpc_requests_total gRPC calls handled, by method and status code.',
      '# TYPE ingot_grpc_requests_total counter',
    ];
    const seconds = [
      '# HELP ingot_grpc_request_seconds_total Time spent handling gRPC calls.',
      '# TYPE ingot_grpc_request_seconds_total counter',
    ];
    for (const [key, { count, seconds: s }] of this.#calls) {
      const [method, code] = key.split('\u0000');
      const labels = `{method="${method}",code="${code}"}`;
      lines.push(`ingot_grpc_requests_total${labels} ${count}`);
      seconds.push(`ingot_grpc_request_seconds_total${labels} ${s.toFixed(6)}`);
    }
    return `${[...lines, ...seconds].join('\n')}\n`;
  }
}
