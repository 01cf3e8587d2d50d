/**
 * A TCP proxy in front of the controller's HTTP listener that misbehaves on
 * request, the way a flaky network does: cuts a download after N bytes once
 * (`cutOnceAfter`), or holds it after N bytes until released
 * (`stallAfter`). It records each request line and `Range` header so tests
 * can see how a download was resumed. Named after its behaviour, like
 * tinkerbell's failNWriter.
 */
import { createServer, type Server, type Socket } from 'node:net';

export interface ProxiedRequest {
  line: string;
  range: string | undefined;
}

type Fault =
  | { kind: 'cut'; afterBytes: number }
  | { kind: 'stall'; afterBytes: number; release: Promise<void> };

export class FaultyProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly requests: ProxiedRequest[] = [];
  #target: { host: string; port: number } | undefined;
  #fault: Fault | undefined;
  #port = 0;

  private constructor() {
    this.#server = createServer((client) => this.#handle(client));
  }

  static async start(): Promise<FaultyProxy> {
    const proxy = new FaultyProxy();
    await new Promise<void>((resolve) => proxy.#server.listen(0, '127.0.0.1', resolve));
    proxy.#port = (proxy.#server.address() as { port: number }).port;
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Where to forward (the controller's HTTP address, known once it runs). */
  setTarget(address: string): void {
    const i = address.lastIndexOf(':');
    this.#target = { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
  }

  /** The next connection that carries a response body is cut after `bytes` bytes of it; later ones pass. */
  cutOnceAfter(bytes: number): void {
    this.#fault = { kind: 'cut', afterBytes: bytes };
  }

  /** The next connection stops forwarding after `bytes` bytes until `release()`; returns release. */
  stallAfter(bytes: number): () => void {
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.#fault = { kind: 'stall', afterBytes: bytes, release: released };
    return release;
  }

  /** Bytes the stalled connection has let through, once it stalls: the test's cue that the download is under way. */
  stalled = false;

  /** Breaks every open connection at once, as a network outage does. */
  dropAll(): void {
    for (const socket of this.#sockets) socket.resetAndDestroy();
  }

  async stop(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #handle(client: Socket): void {
    const target = this.#target;
    if (!target) {
      client.destroy();
      return;
    }
    const fault = this.#fault;
    this.#fault = undefined;
    const upstream = new (client.constructor as typeof Socket)();
    this.#sockets.add(client);
    this.#sockets.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.#sockets.delete(client);
      this.#sockets.delete(upstream);
    };
    client.on('error', close);
    upstream.on('error', close);
    // The agent went away: so does the request. The server finished: pass its end on once the
    // last bytes are out (destroying the client socket now would truncate the response).
    client.on('close', close);
    upstream.on('end', () => client.end());
    let head = '';
    client.on('data', (chunk: Buffer) => {
      if (head !== undefined && !head.includes('\r\n\r\n')) {
        head += chunk.toString('latin1');
        if (head.includes('\r\n\r\n')) {
          const lines = head.split('\r\n');
          const range = lines.find((l) => /^range:/i.test(l))?.replace(/^range:\s*/i, '');
          this.requests.push({ line: lines[0] ?? '', range });
        }
      }
      upstream.write(chunk);
    });
    let forwarded = 0;
    upstream.on('data', (chunk: Buffer) => {
      if (!fault) {
        client.write(chunk);
        return;
      }
      const room = fault.afterBytes - forwarded;
      if (room > chunk.length) {
        forwarded += chunk.length;
        client.write(chunk);
        return;
      }
      if (room > 0) client.write(chunk.subarray(0, room));
      forwarded = fault.afterBytes;
      if (fault.kind === 'cut') {
        // An abrupt end, as when a switch port flaps: the client sees a reset mid-body.
        client.resetAndDestroy();
        close();
        return;
      }
      upstream.pause();
      this.stalled = true;
      const rest = chunk.subarray(Math.max(0, room));
      void fault.release.then(() => {
        // Released: the stalled connection is dropped, as a dead node's would be.
        close();
        void rest;
      });
    });
    upstream.connect(target.port, target.host);
  }
}
