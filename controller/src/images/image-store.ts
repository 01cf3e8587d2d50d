import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, fdatasync as fdatasyncCallback, mkdirSync } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import { isId } from '../domain/formats.ts';
import type { DiskFormat } from '../store/entities/image.ts';

/** What an upload turned out to be. */
export interface ReceivedImage {
  sizeBytes: number;
  virtualSizeBytes: number;
  sha256: string;
}

/** Why an upload was refused; the message is for the uploader. */
export class ImageDataError extends Error {
  readonly reason: 'IMAGE_CHECKSUM_MISMATCH' | 'IMAGE_DATA_INVALID' | 'IMAGE_EMPTY';

  constructor(reason: ImageDataError['reason'], message: string, opts: { cause?: unknown } = {}) {
    super(message, opts);
    this.name = 'ImageDataError';
    this.reason = reason;
  }
}

/** Bytes a write to the store file may buffer before waiting for the disk. @default 4 MiB */
const WRITE_BUFFER_BYTES = 4 << 20;
/**
 * Decompressed bytes per chunk when checking a compressed upload: zlib's 16 KiB default makes the
 * check three times slower than the decompression itself. @default 1 MiB
 */
const INFLATE_CHUNK_BYTES = 1 << 20;
/**
 * While receiving, the file is flushed to disk (fdatasync, in the background) every this many bytes,
 * so that the final fsync does not wait for the whole image: the disk writes while the bytes come in.
 * @default 256 MiB
 */
const FLUSH_EVERY_BYTES = 256 << 20;

/**
 * Image bytes on the controller's disk, one file per image named by its id
 * (ids are UUIDs, checked before any path is built, so no request can reach
 * another file). Uploads go to `<id>.partial` and are renamed once complete
 * and verified, so a file that exists is whole.
 */
export class ImageStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  /** The file of an ACTIVE image; throws for anything that is not an id. */
  pathOf(id: string): string {
    if (!isId(id)) throw new Error(`not an image id: ${JSON.stringify(id)}`);
    return join(this.dir, id.toLowerCase());
  }

  /** Size and mtime of a stored image, or undefined when there is none. */
  async stat(id: string): Promise<{ sizeBytes: number; mtimeMs: number } | undefined> {
    try {
      const s = await stat(this.pathOf(id));
      return s.isFile() ? { sizeBytes: s.size, mtimeMs: s.mtimeMs } : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * Streams `source` into the store. The SHA-256 is computed on the way in;
   * a compressed image is also decompressed on the way (and the bytes
   * thrown away) to prove it is whole and to learn its virtual size, so a
   * node is never sent an image that cannot be written. Rejects with
   * ImageDataError for bad data; nothing is left behind on failure.
   * `verify` runs once every byte is in, before the file is kept: whatever
   * it throws fails the receive too (a capture compares with the agent's
   * count and digest there).
   */
  async receive(
    id: string,
    format: DiskFormat,
    source: AsyncIterable<Buffer>,
    opts: {
      expectedSha256?: string;
      signal?: AbortSignal;
      verify?: (received: ReceivedImage) => Promise<void>;
    } = {},
  ): Promise<ReceivedImage> {
    const final = this.pathOf(id);
    const partial = `${final}.partial`;
    const file = createWriteStream(partial, { mode: 0o600, highWaterMark: WRITE_BUFFER_BYTES });
    // Errors reach the caller through the writes; a late one (after a teardown) must not go unhandled.
    file.on('error', () => {});
    const hash = createHash('sha256');
    const inflater =
      format === 'gzip'
        ? createGunzip({ chunkSize: INFLATE_CHUNK_BYTES })
        : format === 'zstd'
          ? createZstdDecompress({ chunkSize: INFLATE_CHUNK_BYTES })
          : undefined;
    let sizeBytes = 0;
    let virtualSizeBytes = 0;
    let flushedBytes = 0;
    let flushing: Promise<void> | undefined;
    let inflaterError: Error | undefined;
    inflater?.on('data', (chunk: Buffer) => {
      virtualSizeBytes += chunk.length;
    });
    inflater?.on('error', (err) => {
      inflaterError = err;
    });
    const inflated = inflater ? once(inflater, 'end') : Promise.resolve([]);
    // An error event before anyone awaits must not crash the process.
    inflated.catch(() => {});
    try {
      for await (const chunk of source) {
        opts.signal?.throwIfAborted();
        if (chunk.length === 0) continue;
        sizeBytes += chunk.length;
        hash.update(chunk);
        // Both writes settle before anything is torn down, so no write is pending on a destroyed stream.
        const written = await Promise.allSettled([
          write(file, chunk),
          inflater ? write(inflater, chunk) : undefined,
        ]);
        for (const result of written) if (result.status === 'rejected') throw result.reason;
        const fd = (file as unknown as { fd: number | null }).fd;
        if (sizeBytes - flushedBytes >= FLUSH_EVERY_BYTES && !flushing && typeof fd === 'number') {
          flushedBytes = sizeBytes;
          flushing = fdatasync(fd).finally(() => {
            flushing = undefined;
          });
          // Only a head start for the final fsync, which reports any error: this one may fail unheard.
          flushing.catch(() => {});
        }
      }
      opts.signal?.throwIfAborted();
      if (sizeBytes === 0) throw new ImageDataError('IMAGE_EMPTY', 'the upload carried no bytes');
      if (inflater) {
        inflater.end();
        await inflated;
      } else {
        virtualSizeBytes = sizeBytes;
      }
      const sha256 = hash.digest('hex');
      if (opts.expectedSha256 && opts.expectedSha256.toLowerCase() !== sha256) {
        throw new ImageDataError(
          'IMAGE_CHECKSUM_MISMATCH',
          `the upload hashes to sha256 ${sha256}, not the expected ${opts.expectedSha256}; upload it again`,
        );
      }
      await flushing?.catch(() => {});
      file.end();
      await once(file, 'close');
      await syncFile(partial);
      const received = { sizeBytes, virtualSizeBytes, sha256 };
      await opts.verify?.(received);
      await rename(partial, final);
      return received;
    } catch (err) {
      await flushing?.catch(() => {});
      file.destroy();
      inflater?.destroy();
      await rm(partial, { force: true });
      if (inflaterError !== undefined && err === inflaterError) {
        throw new ImageDataError(
          'IMAGE_DATA_INVALID',
          `the upload is not a valid ${format} stream (${(err as Error).message}); check --format`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  async remove(id: string): Promise<void> {
    await rm(this.pathOf(id), { force: true });
    await rm(`${this.pathOf(id)}.partial`, { force: true });
  }
}

const fdatasync = promisify(fdatasyncCallback);

/** Writes one chunk, waiting when the stream's buffer is full; rejects on the stream's error. */
async function write(stream: Writable, chunk: Buffer): Promise<void> {
  if (stream.destroyed) throw stream.errored ?? new Error('stream closed');
  if (stream.write(chunk)) return;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      stream.off('drain', onDrain);
      reject(err);
    };
    const onDrain = () => {
      stream.off('error', onError);
      resolve();
    };
    stream.once('drain', onDrain);
    stream.once('error', onError);
  });
}

async function syncFile(path: string): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
