import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TaskFailure } from '../../agent/src/tasks/task-failure.ts';
import { type BodyTarget, download } from '../../agent/src/transport/download.ts';

// The agent's HTTP download against a real HTTP server that misbehaves on purpose, one behaviour per
// path: how it resumes, which answers it retries and which end the task.

const BODY = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7 + (i >> 9)) & 0xff));

/** Collects the body in small regions (many reads), and is "full" every few regions until released. */
class CollectingTarget implements BodyTarget {
  readonly data = Buffer.alloc(BODY.length + 1024);
  fill = 0;
  #since = 0;
  #blocked = false;
  readonly #regionBytes: number;
  readonly #blockEvery: number;

  constructor(regionBytes = 7000, blockEvery = 5) {
    this.#regionBytes = regionBytes;
    this.#blockEvery = blockEvery;
  }

  region(): Buffer | undefined {
    if (this.#blocked) return undefined;
    return this.data.subarray(this.fill, this.fill + this.#regionBytes);
  }

  filled(n: number): void {
    this.fill += n;
    if (++this.#since === this.#blockEvery) {
      this.#since = 0;
      this.#blocked = true;
    }
  }

  async ready(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    this.#blocked = false;
  }

  get body(): Buffer {
    return this.data.subarray(0, this.fill);
  }
}

describe('download', () => {
  let server: Server;
  let base = '';
  const seen: { path: string; range: string | undefined }[] = [];
  let failuresLeft = 0;

  /** Serves BODY (or the ranged part of it) with Content-Length and an ETag. */
  function serve(
    req: IncomingMessage,
    res: ServerResponse,
    opts: { cutAfter?: number; etag?: string } = {},
  ): void {
    const match = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = match ? Number(match[1]) : 0;
    const headers = { 'content-length': BODY.length - start, etag: opts.etag ?? '"v1"' };
    if (match)
      res.writeHead(206, { ...headers, 'content-range': `bytes ${start}-${BODY.length - 1}/${BODY.length}` });
    else res.writeHead(200, headers);
    if (opts.cutAfter !== undefined && !match) {
      res.write(BODY.subarray(0, opts.cutAfter), () => res.socket?.destroy());
      return;
    }
    res.end(BODY.subarray(start));
  }

  beforeAll(async () => {
    server = createServer((req, res) => {
      const path = req.url ?? '';
      seen.push({ path, range: req.headers.range });
      if (path === '/whole') serve(req, res);
      else if (path === '/cut') serve(req, res, { cutAfter: 100_000 });
      else if (path === '/expired') res.writeHead(403).end('expired');
      else if (path === '/flaky') {
        if (failuresLeft-- > 0) res.writeHead(503).end();
        else serve(req, res);
      } else if (path === '/down') res.writeHead(500).end();
      else if (path === '/chunked') {
        res.writeHead(200, { 'transfer-encoding': 'chunked' });
        res.end(BODY);
      } else if (path === '/no-ranges') {
        if (req.headers.range) res.writeHead(200, { 'content-length': BODY.length }).end(BODY);
        else serve(req, res, { cutAfter: 50_000 });
      } else if (path === '/wrong-start') {
        if (req.headers.range) {
          res.writeHead(206, {
            'content-length': BODY.length - 10,
            'content-range': `bytes 10-${BODY.length - 1}/${BODY.length}`,
          });
          res.end(BODY.subarray(10));
        } else serve(req, res, { cutAfter: 50_000 });
      } else if (path === '/too-long')
        res
          .writeHead(200, { 'content-length': BODY.length + 10 })
          .end(Buffer.concat([BODY, Buffer.alloc(10)]));
      else if (path === '/stall')
        res.writeHead(200, { 'content-length': BODY.length }).write(BODY.subarray(0, 1000));
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const opts = { sizeBytes: BODY.length, retryDelayMs: 1 };

  it('reads the body straight into the target, through many small regions and pauses', async () => {
    const target = new CollectingTarget();
    await download(`${base}/whole`, target, opts);
    expect(target.body.equals(BODY)).toBe(true);
  });

  it('resumes a cut connection with Range and If-Range from the bytes it has', async () => {
    const target = new CollectingTarget(64 * 1024, 1000);
    const resumed: number[] = [];
    const before = seen.length;
    await download(`${base}/cut`, target, { ...opts, onResume: (offset) => resumed.push(offset) });
    expect(createHash('sha256').update(target.body).digest('hex')).toBe(
      createHash('sha256').update(BODY).digest('hex'),
    );
    expect(resumed).toEqual([100_000]);
    expect(seen.slice(before).map((s) => s.range)).toEqual([undefined, 'bytes=100000-']);
  });

  it('retries server errors, and gives up after the attempts it is allowed', async () => {
    failuresLeft = 2;
    const target = new CollectingTarget();
    await download(`${base}/flaky`, target, opts);
    expect(target.body.equals(BODY)).toBe(true);

    const failed = await download(`${base}/down`, new CollectingTarget(), { ...opts, maxAttempts: 3 }).catch(
      (e) => e,
    );
    expect(failed).toBeInstanceOf(TaskFailure);
    expect(failed).toMatchObject({
      reason: 'DOWNLOAD_FAILED',
      message: expect.stringMatching(/3 times in a row/),
    });
  });

  it.each([
    ['/expired', /refused \(expired/],
    ['/chunked', /chunked/],
    ['/no-ranges', /whole file/],
    ['/wrong-start', /resumed at 10, not at 50000/],
    ['/too-long', /sends 300010 bytes, expected 300000/],
    ['/missing', /HTTP 404/],
  ])('fails at once on %s', async (path, message) => {
    const before = seen.length;
    const failed = await download(`${base}${path}`, new CollectingTarget(), opts).catch((e) => e);
    expect(failed).toBeInstanceOf(TaskFailure);
    expect(failed.reason).toBe('DOWNLOAD_FAILED');
    expect(failed.message).toMatch(message);
    expect(seen.length - before).toBeLessThanOrEqual(2);
  });

  it('stops when aborted, mid-body', async () => {
    const abort = new AbortController();
    const target = new CollectingTarget();
    const pending = download(`${base}/stall`, target, { ...opts, signal: abort.signal });
    while (target.fill < 1000) await new Promise((resolve) => setImmediate(resolve));
    abort.abort(new TaskFailure('CANCELLED', 'cancelled'));
    await expect(pending).rejects.toMatchObject({ reason: 'CANCELLED' });
  });
});
