import { connect, type Socket } from 'node:net';
import { Reason, TaskFailure } from '../tasks/task-failure.ts';

/** How long connecting to a receiver may take. @default 10 s */
const CONNECT_TIMEOUT_MS = 10_000;
/** After the last byte, how long to wait for the receiver to close its side before closing ours anyway. @default 10 s */
const CLOSE_WAIT_MS = 10_000;

/**
 * A plain TCP byte stream to a receiver (`nc -l`, `bmctl image receive`):
 * no header, no trailer. `write` resolves once the kernel has taken the
 * bytes, so awaiting it is the backpressure; the buffer may be reused then.
 */
export class TcpSender {
  readonly #socket: Socket;
  readonly #receiver: string;
  #failure: TaskFailure | undefined;

  private constructor(socket: Socket, receiver: string) {
    this.#socket = socket;
    this.#receiver = receiver;
    socket.on('error', (err) => {
      this.#failure ??= this.#failed(err);
    });
    // The receiver sends nothing; reading lets its close (FIN) be seen.
    socket.resume();
  }

  /** Connects to `host:port`; RECEIVER_UNREACHABLE when nobody listens there. */
  static async connect(host: string, port: number, signal: AbortSignal): Promise<TcpSender> {
    const receiver = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    // A receiver may close its sending side early (busybox `nc -l` does when its stdin ends): keep ours.
    const socket = connect({ host, port, timeout: CONNECT_TIMEOUT_MS, allowHalfOpen: true });
    try {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        socket.once('connect', () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        });
        socket.once('timeout', () => reject(new Error(`no answer within ${CONNECT_TIMEOUT_MS / 1000} s`)));
        socket.once('error', reject);
      });
    } catch (err) {
      socket.destroy();
      if (signal.aborted) throw signal.reason;
      throw new TaskFailure(
        Reason.RECEIVER_UNREACHABLE,
        `cannot connect to the receiver ${receiver}: ${(err as Error).message}; start \`bmctl image receive --listen ${port} --out FILE\` (or \`nc -l ${port} > FILE\`) there first`,
        { metadata: { receiver }, cause: err },
      );
    }
    socket.setTimeout(0);
    socket.setNoDelay(false);
    return new TcpSender(socket, receiver);
  }

  /** Resolves once the kernel took all of `data`; RECEIVER_FAILED when the connection broke. */
  write(data: Buffer): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#socket.write(data, (err) => {
        if (!err) return resolve();
        this.#failure ??= this.#failed(err);
        reject(this.#failure);
      });
    });
  }

  /** Sends FIN after the last byte and waits (briefly) for the receiver to close too. */
  async end(): Promise<void> {
    if (this.#failure) throw this.#failure;
    await new Promise<void>((resolve, reject) => {
      this.#socket.end(() => (this.#failure ? reject(this.#failure) : resolve()));
    });
    if (!this.#socket.readableEnded) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, CLOSE_WAIT_MS);
        this.#socket.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        this.#socket.once('end', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.#socket.destroy();
  }

  /**
   * Drops the connection at once (failure, cancel) with a reset, not a FIN: the receiver sees a broken
   * stream, not one that merely ended early.
   */
  destroy(): void {
    if (this.#socket.destroyed) return;
    this.#socket.resetAndDestroy();
  }

  #failed(err: Error): TaskFailure {
    return new TaskFailure(
      Reason.RECEIVER_FAILED,
      `the connection to the receiver ${this.#receiver} broke: ${err.message}; its copy is incomplete, capture again`,
      { metadata: { receiver: this.#receiver }, cause: err },
    );
  }
}
