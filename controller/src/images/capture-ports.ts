import { createServer, isIP, type Server, type Socket } from 'node:net';
import { CapturePortsBusyError } from '../domain/agent-errors.ts';

/** The ports of the capture range and where they listen. */
export interface CapturePortRange {
  listenHost: string;
  advertiseHost: string;
  firstPort: number;
  lastPort: number;
}

/** Nobody connected to a capture port before its deadline. */
export class NoConnectionError extends Error {
  constructor(receiver: string) {
    super(`nobody connected to ${receiver} in time`);
    this.name = 'NoConnectionError';
  }
}

/**
 * One listening port of the range, for one TCP connection: the first one
 * is taken and the port stops listening, so later connections are refused.
 */
export class CapturePort {
  readonly port: number;
  /** `HOST:PORT` senders use (the advertised host, IPv6 in brackets). */
  readonly receiver: string;
  readonly #server: Server;
  readonly #release: () => void;
  readonly #accepted: Promise<Socket>;
  #closed = false;

  constructor(server: Server, port: number, advertiseHost: string, release: () => void) {
    this.#server = server;
    this.port = port;
    this.receiver = `${isIP(advertiseHost) === 6 ? `[${advertiseHost}]` : advertiseHost}:${port}`;
    this.#release = release;
    this.#accepted = new Promise<Socket>((resolve, reject) => {
      server.once('connection', (socket: Socket) => {
        this.close();
        resolve(socket);
      });
      server.once('close', () => reject(new NoConnectionError(this.receiver)));
    });
    // Rejections are seen by whoever awaits accept(); a port closed unawaited must not count as unhandled.
    this.#accepted.catch(() => {});
  }

  /** The first connection; rejects with NoConnectionError at `deadline`, or with `signal`'s reason. */
  async accept(deadline: Date, signal: AbortSignal): Promise<Socket> {
    const timer = setTimeout(() => this.close(), Math.max(0, deadline.getTime() - Date.now()));
    const onAbort = () => this.close();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await this.#accepted;
    } catch (err) {
      throw signal.aborted ? signal.reason : err;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Stops listening (a connection already taken goes on) and frees the port for the range. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    this.#release();
  }
}

/**
 * The controller's capture port range. A port is taken for one capture
 * and given back when it closes; a port another program (or controller)
 * holds is skipped.
 */
export class CapturePorts {
  readonly #range: CapturePortRange;
  readonly #taken = new Set<number>();

  constructor(range: CapturePortRange) {
    this.#range = range;
  }

  /** Listens on the first free port of the range; CapturePortsBusyError when there is none. */
  async open(): Promise<CapturePort> {
    const { firstPort, lastPort, listenHost, advertiseHost } = this.#range;
    for (let port = firstPort; port <= lastPort; port++) {
      if (this.#taken.has(port)) continue;
      this.#taken.add(port);
      const server = createServer({ noDelay: false });
      // Only one sender per port: the kernel's accept queue may still hold a second one; drop it.
      server.maxConnections = 1;
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host: listenHost, port, exclusive: true }, () => {
            server.off('error', reject);
            resolve();
          });
        });
      } catch (err) {
        this.#taken.delete(port);
        if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') continue;
        throw err;
      }
      return new CapturePort(server, port, advertiseHost, () => this.#taken.delete(port));
    }
    throw new CapturePortsBusyError(firstPort, lastPort);
  }
}
