import { createReadStream } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';

/** Read size for served files: large reads keep a multi-GiB download cheap. @default 1 MiB */
const READ_CHUNK_BYTES = 1 << 20;

/** A byte range, both ends inclusive. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Parses a `Range` header for a resource of `size` bytes (RFC 9110 §14):
 * undefined when absent or not a single bytes range (serve it whole),
 * 'unsatisfiable' when it lies outside the resource.
 */
export function parseRange(
  header: string | undefined,
  size: number,
): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  const [, from, to] = match as unknown as [string, string, string];
  if (from === '') {
    // Suffix: the last N bytes.
    const n = Number(to);
    if (n === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(from);
  const end = to === '' ? size - 1 : Math.min(Number(to), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/**
 * Sends a file with `Content-Length`, `ETag`, `Accept-Ranges` and single
 * `Range` requests (206, or 416 outside the file); `If-Range` with another
 * ETag gets the whole file. HEAD sends the headers only.
 */
export async function sendFile(
  req: IncomingMessage,
  res: ServerResponse,
  file: { path: string; sizeBytes: number; etag: string; contentType: string },
): Promise<void> {
  const ifRange = req.headers['if-range'];
  const rangeHeader = ifRange === undefined || ifRange === file.etag ? req.headers.range : undefined;
  const range = parseRange(rangeHeader, file.sizeBytes);
  const headers: Record<string, string | number> = {
    'content-type': file.contentType,
    'accept-ranges': 'bytes',
    etag: file.etag,
    'cache-control': 'no-store',
  };
  if (range === 'unsatisfiable') {
    res
      .writeHead(416, { ...headers, 'content-range': `bytes */${file.sizeBytes}`, 'content-length': 0 })
      .end();
    return;
  }
  const { start, end } = range ?? { start: 0, end: file.sizeBytes - 1 };
  const length = file.sizeBytes === 0 ? 0 : end - start + 1;
  if (range) headers['content-range'] = `bytes ${start}-${end}/${file.sizeBytes}`;
  headers['content-length'] = length;
  res.writeHead(range ? 206 : 200, headers);
  if (req.method === 'HEAD' || length === 0) {
    res.end();
    return;
  }
  await pipeline(createReadStream(file.path, { start, end, highWaterMark: READ_CHUNK_BYTES }), res);
}
