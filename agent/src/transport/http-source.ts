import { type ClientRequest, request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Reason, TaskFailure } from '../tasks/task-failure.ts';

export interface HttpSourceOptions {
  /** Bytes the URL serves; the download is complete only when all arrived. */
  sizeBytes: number;
  /** Consecutive attempts that bring no new byte before the download fails. @default 8 */
  maxAttempts?: number;
  /** First pause before a retry, doubled each time up to 10 s. @default 250 ms */
  retryDelayMs?: number;
  /** Called before each resumed request with the offset it resumes from. */
  onResume?: (offsetBytes: number, cause: Error) => void;
}

/**
 * The bytes of one HTTP URL as a stream that survives dropped connections:
 * when a response breaks off, it asks again with `Range: bytes=<received>-`
 * (and `If-Range` with the first response's ETag, so a changed file is
 * never spliced onto an old one) and carries on from there. Statuses that
 * retrying cannot fix (403 expired URL, 404, 416) fail at once.
 */
export class HttpSource extends Readable {
  readonly #url: URL;
  readonly #size: number;
  readonly #maxAttempts: number;
  readonly #retryDelayMs: number;
  readonly #onResume: HttpSourceOptions['onResume'];
  #offset = 0;
  #etag: string | undefined;
  #response: IncomingMessage | undefined;
  #request: ClientRequest | undefined;
  #failures = 0;
  #started = false;
  /** Numbers requests, so that a failure is handled once even when both request and response report it. */
  #attempt = 0;

  constructor(url: string, opts: HttpSourceOptions) {
    super({ highWaterMark: 4 << 20 });
    this.#url = new URL(url);
    this.#size = opts.sizeBytes;
    this.#maxAttempts = opts.maxAttempts ?? 8;
    this.#retryDelayMs = opts.retryDelayMs ?? 250;
    this.#onResume = opts.onResume;
  }

  /** Bytes received so far: where a resumed request starts. */
  get offsetBytes(): number {
    return this.#offset;
  }

  override _read(): void {
    if (!this.#started) {
      this.#started = true;
      this.#fetch();
    } else {
      this.#response?.resume();
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#request?.destroy();
    this.#response?.destroy();
    callback(err);
  }

  #fetch(): void {
    if (this.destroyed) return;
    const headers: Record<string, string> = {};
    if (this.#offset > 0) {
      headers.range = `bytes=${this.#offset}-`;
      if (this.#etag) headers['if-range'] = this.#etag;
    }
    const send = this.#url.protocol === 'https:' ? httpsRequest : httpRequest;
    const attempt = ++this.#attempt;
    // A fresh connection per request: a resumed download must not reuse the socket that failed.
    const req = send(this.#url, { method: 'GET', headers, agent: false });
    this.#request = req;
    req.on('response', (res) => this.#onResponse(res, attempt));
    req.on('error', (err) => this.#retry(err, attempt));
    req.end();
  }

  #onResponse(res: IncomingMessage, attempt: number): void {
    const status = res.statusCode ?? 0;
    const resuming = this.#offset > 0;
    if (status === 206 && resuming) {
      const start = /^bytes (\d+)-/.exec(res.headers['content-range'] ?? '')?.[1];
      if (Number(start) !== this.#offset) {
        res.destroy();
        this.destroy(
          new TaskFailure(
            Reason.DOWNLOAD_FAILED,
            `the image server resumed at ${start}, not at ${this.#offset}`,
          ),
        );
        return;
      }
    } else if (status === 200 && resuming) {
      res.destroy();
      this.destroy(
        new TaskFailure(
          Reason.DOWNLOAD_FAILED,
          'the image server answered a resumed request with the whole file (no Range support, or the image changed); deploy again',
        ),
      );
      return;
    } else if (status !== 200) {
      res.resume();
      const retryable = status >= 500 || status === 429;
      const failure = new TaskFailure(
        Reason.DOWNLOAD_FAILED,
        status === 403
          ? 'the image URL was refused (expired or not for this image); the controller sends a fresh one when the task is sent again'
          : `the image server answered HTTP ${status}`,
        { metadata: { http_status: String(status) } },
      );
      if (retryable) this.#retry(failure, attempt);
      else this.destroy(failure);
      return;
    }
    if (!this.#etag && typeof res.headers.etag === 'string') this.#etag = res.headers.etag;
    this.#response = res;
    res.on('data', (chunk: Buffer) => {
      this.#offset += chunk.length;
      this.#failures = 0;
      if (this.#offset > this.#size) {
        res.destroy();
        this.destroy(
          new TaskFailure(
            Reason.DOWNLOAD_FAILED,
            `the image server sent more than the announced ${this.#size} bytes`,
          ),
        );
        return;
      }
      if (!this.push(chunk)) res.pause();
    });
    res.on('end', () => {
      this.#response = undefined;
      if (this.#offset === this.#size) this.push(null);
      else this.#retry(new Error(`the response ended after ${this.#offset} of ${this.#size} bytes`), attempt);
    });
    res.on('error', (err) => {
      this.#response = undefined;
      this.#retry(err, attempt);
    });
  }

  #retry(cause: Error, attempt: number): void {
    if (this.destroyed || attempt !== this.#attempt) return;
    // Any later report of this request is stale.
    this.#attempt += 1;
    this.#request?.destroy();
    this.#response?.destroy();
    this.#response = undefined;
    this.#failures += 1;
    if (cause instanceof TaskFailure && this.#failures >= this.#maxAttempts) {
      this.destroy(cause);
      return;
    }
    if (this.#failures >= this.#maxAttempts) {
      this.destroy(
        new TaskFailure(
          Reason.DOWNLOAD_FAILED,
          `the download failed ${this.#failures} times in a row at byte ${this.#offset}: ${cause.message}`,
          { cause },
        ),
      );
      return;
    }
    const delay = Math.min(this.#retryDelayMs * 2 ** (this.#failures - 1), 10_000);
    this.#onResume?.(this.#offset, cause);
    sleep(delay).then(() => this.#fetch());
  }
}
