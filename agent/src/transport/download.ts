import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Reason, TaskFailure } from '../tasks/task-failure.ts';
import { HttpSource } from './http-source.ts';

/**
 * Where downloaded bytes go: the reader asks for a region, the socket reads
 * straight into it, and the reader reports how much landed. No chunk is
 * allocated or copied on the way, so a multi-GiB download costs the kernel's
 * copy and nothing else.
 */
export interface BodyTarget {
  /** Room for the next read, or undefined while the target is full (the reader then waits on `ready`). */
  region(): Buffer | undefined;
  /** `n` bytes were written at the start of the region last returned. */
  filled(n: number): void;
  /** Resolves once `region()` has room again; rejects if the target failed. */
  ready(): Promise<void>;
}

export interface DownloadOptions {
  /** Bytes the URL serves; the download is complete only when all arrived. */
  sizeBytes: number;
  /** Consecutive attempts that bring no new byte before the download fails. @default 8 */
  maxAttempts?: number;
  /** First pause before a retry, doubled each time up to 10 s. @default 250 ms */
  retryDelayMs?: number;
  /** Called before each resumed request with the offset it resumes from. */
  onResume?: (offsetBytes: number, cause: Error) => void;
  signal?: AbortSignal;
}

/** Longest response head accepted. @default 16 KiB */
const MAX_HEAD_BYTES = 16 << 10;

/**
 * Downloads `url` into `target`, resuming after a dropped connection with
 * `Range: bytes=<received>-` (and `If-Range` with the first response's ETag,
 * so a changed file is never spliced onto an old one). Statuses retrying
 * cannot fix (403 expired URL, 404, 416) fail at once with DOWNLOAD_FAILED,
 * as does any TaskFailure the target raises.
 *
 * Plain `http://` URLs are read with a minimal HTTP/1.1 client whose socket
 * reads land directly in the target's memory; `https://` ones go through
 * Node's client and are copied.
 */
export async function download(url: string, target: BodyTarget, opts: DownloadOptions): Promise<void> {
  const parsed = new URL(url);
  if (parsed.protocol === 'https:') return viaStream(url, target, opts);
  if (parsed.protocol !== 'http:') {
    throw new TaskFailure(Reason.DOWNLOAD_FAILED, `cannot download ${parsed.protocol} URLs`);
  }
  const maxAttempts = opts.maxAttempts ?? 8;
  const retryDelayMs = opts.retryDelayMs ?? 250;
  const state: AttemptState = { offset: 0, etag: undefined };
  let failures = 0;
  for (;;) {
    opts.signal?.throwIfAborted();
    const before = state.offset;
    try {
      await attempt(parsed, target, opts.sizeBytes, state, opts.signal);
      return;
    } catch (err) {
      if (err instanceof TaskFailure) throw err;
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      failures = state.offset > before ? 1 : failures + 1;
      if (failures >= maxAttempts) {
        throw new TaskFailure(
          Reason.DOWNLOAD_FAILED,
          `the download failed ${failures} times in a row at byte ${state.offset}: ${(err as Error).message}`,
          { cause: err },
        );
      }
      opts.onResume?.(state.offset, err as Error);
      await sleep(Math.min(retryDelayMs * 2 ** (failures - 1), 10_000), undefined, { signal: opts.signal });
    }
  }
}

interface AttemptState {
  /** Body bytes received so far, over all attempts. */
  offset: number;
  etag: string | undefined;
}

/** One request: resolves when the body is complete, rejects on any failure (TaskFailure for final ones). */
function attempt(
  url: URL,
  target: BodyTarget,
  sizeBytes: number,
  state: AttemptState,
  signal: AbortSignal | undefined,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const head = Buffer.alloc(MAX_HEAD_BYTES);
    let headFill = 0;
    let inBody = false;
    let settled = false;
    /** Body bytes that came with the head and still have to be placed. */
    let carry: Buffer | undefined;
    let socket: Socket | undefined;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      socket?.destroy();
      if (err) reject(err);
      else resolve();
    };
    const onAbort = () => finish(signal?.reason ?? new Error('aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });

    /** Whether the socket may read on; if not, it is paused until the target has room. */
    const canRead = (): boolean => {
      if (state.offset === sizeBytes) {
        finish();
        return false;
      }
      if (carry && !placeCarry()) return false;
      if (target.region()) return true;
      target.ready().then(
        () => {
          if (!settled && canRead()) socket?.resume();
        },
        (err: Error) => finish(err),
      );
      return false;
    };
    const placeCarry = (): boolean => {
      while (carry && carry.length > 0) {
        const region = target.region();
        if (!region) return false;
        const n = carry.copy(region, 0, 0, Math.min(carry.length, sizeBytes - state.offset));
        state.offset += n;
        target.filled(n);
        carry = n < carry.length ? carry.subarray(n) : undefined;
      }
      carry = undefined;
      return true;
    };
    const onHead = (): boolean => {
      const end = head.subarray(0, headFill).indexOf('\r\n\r\n');
      if (end < 0) {
        if (headFill === MAX_HEAD_BYTES) finish(new Error('the response head is too long'));
        return true;
      }
      const lines = head.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
      const headers = new Map<string, string>();
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      const problem = checkResponse(status, headers, state, sizeBytes);
      if (problem) {
        finish(problem);
        return false;
      }
      state.etag ??= headers.get('etag');
      inBody = true;
      if (end + 4 < headFill) carry = Buffer.from(head.subarray(end + 4, headFill));
      return canRead();
    };

    socket = connect({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port || 80),
      noDelay: true,
      onread: {
        buffer: () => (inBody ? (target.region() ?? head) : head.subarray(headFill)),
        callback: (n, buffer) => {
          try {
            return onBytes(n, buffer);
          } catch (err) {
            finish(err as Error);
            return false;
          }
        },
      },
    });
    function onBytes(n: number, buffer: Uint8Array): boolean {
      if (settled) return false;
      if (!inBody) {
        headFill += n;
        return onHead();
      }
      if (buffer === head) {
        // Only when the target had no room: cannot happen while paused, but never lose bytes.
        carry = Buffer.concat([carry ?? Buffer.alloc(0), head.subarray(0, n)]);
        return canRead();
      }
      if (state.offset + n > sizeBytes) {
        finish(new TaskFailure(Reason.DOWNLOAD_FAILED, `the image server sent more than ${sizeBytes} bytes`));
        return false;
      }
      state.offset += n;
      target.filled(n);
      return canRead();
    }
    socket.on('connect', () => {
      const lines = [
        `GET ${url.pathname}${url.search} HTTP/1.1`,
        `Host: ${url.host}`,
        'User-Agent: ingot-agent',
        'Connection: close',
      ];
      if (state.offset > 0) {
        lines.push(`Range: bytes=${state.offset}-`);
        if (state.etag) lines.push(`If-Range: ${state.etag}`);
      }
      socket?.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
    socket.on('error', (err) => finish(err));
    socket.on('end', () => {
      if (state.offset !== sizeBytes)
        finish(new Error(`the response ended after ${state.offset} of ${sizeBytes} bytes`));
    });
    socket.on('close', () => {
      if (state.offset !== sizeBytes)
        finish(new Error(`the connection closed after ${state.offset} of ${sizeBytes} bytes`));
      else finish();
    });
  });
}

/** Why a response cannot be used, or undefined. TaskFailures are final; other errors are retried. */
function checkResponse(
  status: number,
  headers: Map<string, string>,
  state: AttemptState,
  sizeBytes: number,
): Error | undefined {
  const resuming = state.offset > 0;
  if (status === 206 && resuming) {
    const start = /^bytes (\d+)-/.exec(headers.get('content-range') ?? '')?.[1];
    if (Number(start) !== state.offset) {
      return final(`the image server resumed at ${start}, not at ${state.offset}`);
    }
  } else if (status === 200 && resuming) {
    return final(
      'the image server answered a resumed request with the whole file (no Range support, or the image changed); deploy again',
    );
  } else if (status !== 200) {
    const message =
      status === 403
        ? 'the image URL was refused (expired or not for this image); the controller sends a fresh one when the task is sent again'
        : `the image server answered HTTP ${status}`;
    if (status >= 500 || status === 429) return new Error(message);
    return final(message, { http_status: String(status) });
  }
  if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) {
    return final('the image server sent a chunked response; the agent needs Content-Length');
  }
  const length = Number(headers.get('content-length'));
  if (!Number.isFinite(length) || length !== sizeBytes - state.offset) {
    return final(
      `the image server sends ${headers.get('content-length')} bytes, expected ${sizeBytes - state.offset}`,
    );
  }
  return undefined;
}

function final(message: string, metadata: Record<string, string> = {}): TaskFailure {
  return new TaskFailure(Reason.DOWNLOAD_FAILED, message, { metadata });
}

/** https: Node's client (HttpSource, with the same resume rules), its chunks copied into the target. */
async function viaStream(url: string, target: BodyTarget, opts: DownloadOptions): Promise<void> {
  const source = new HttpSource(url, {
    sizeBytes: opts.sizeBytes,
    ...(opts.maxAttempts ? { maxAttempts: opts.maxAttempts } : {}),
    ...(opts.retryDelayMs ? { retryDelayMs: opts.retryDelayMs } : {}),
    ...(opts.onResume ? { onResume: opts.onResume } : {}),
  });
  const abort = () => source.destroy(opts.signal?.reason);
  opts.signal?.addEventListener('abort', abort, { once: true });
  try {
    for await (const chunk of source) {
      let at = 0;
      const bytes = chunk as Buffer;
      while (at < bytes.length) {
        let region = target.region();
        while (!region) {
          await target.ready();
          region = target.region();
        }
        const n = bytes.copy(region, 0, at);
        at += n;
        target.filled(n);
      }
    }
  } finally {
    opts.signal?.removeEventListener('abort', abort);
  }
}
