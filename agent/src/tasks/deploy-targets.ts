import type { Hash } from 'node:crypto';
import type { Transform } from 'node:stream';
import type { AlignedWriter } from '../disk/aligned-writer.ts';
import { collectYoungGarbage } from '../gc.ts';
import type { BodyTarget } from '../transport/download.ts';
import { Reason, TaskFailure } from './task-failure.ts';
import { ZstdDecoder } from './zstd-decoder.ts';

/**
 * A raw image: the socket reads straight into the writer's aligned
 * buffers; each read is hashed where it landed.
 */
export class RawTarget implements BodyTarget {
  readonly #writer: AlignedWriter;
  readonly #hash: Hash;
  readonly #onBytes: () => void;
  #last: Buffer | undefined;

  constructor(writer: AlignedWriter, hash: Hash, onBytes: () => void) {
    this.#writer = writer;
    this.#hash = hash;
    this.#onBytes = onBytes;
  }

  region(): Buffer | undefined {
    this.#last = this.#writer.region();
    return this.#last;
  }

  filled(n: number): void {
    this.#hash.update((this.#last as Buffer).subarray(0, n));
    this.#writer.advance(n);
    this.#onBytes();
  }

  ready(): Promise<void> {
    return this.#writer.ready();
  }
}

/** Decompressed bytes between two collections of the decompressor's spent output buffers. @default 4 MiB */
const COLLECT_EVERY_BYTES = 4 << 20;
/** Compressed bytes in flight to the decompressor: this many buffers of `SCRATCH_BYTES`. @default 4 × 512 KiB */
const SCRATCH_BUFFERS = 4;
const SCRATCH_BYTES = 512 << 10;

/**
 * A gzip image: the socket reads into a small ring of buffers; each
 * read is hashed and handed to the decompressor, whose output is copied
 * into the writer. A buffer is reused only once the decompressor has
 * consumed it, and the decompressor waits while the writer has no room, so
 * memory stays fixed end to end.
 */
export class InflatingTarget implements BodyTarget {
  readonly #hash: Hash;
  readonly #inflater: Transform;
  readonly #ring: Buffer[];
  readonly #busy: boolean[];
  readonly #ended: Promise<void>;
  readonly #onBytes: () => void;
  #index = 0;
  #failed: Error | undefined;
  #waiters: (() => void)[] = [];
  #writing: Promise<void> = Promise.resolve();
  #sinceCollect = 0;

  constructor(writer: AlignedWriter, hash: Hash, inflater: Transform, onBytes: () => void) {
    this.#hash = hash;
    this.#inflater = inflater;
    this.#onBytes = onBytes;
    this.#ring = Array.from({ length: SCRATCH_BUFFERS }, () => Buffer.allocUnsafeSlow(SCRATCH_BYTES));
    this.#busy = new Array(SCRATCH_BUFFERS).fill(false);
    inflater.on('data', (chunk: Buffer) => {
      this.#sinceCollect += chunk.length;
      if (this.#sinceCollect >= COLLECT_EVERY_BYTES) {
        this.#sinceCollect = 0;
        collectYoungGarbage();
      }
      // Usually the writer has room: copy at once and let the decompressor run on.
      const taken = writer.writeSome(chunk);
      if (taken === chunk.length) {
        this.#onBytes();
        return;
      }
      inflater.pause();
      this.#writing = writer.write(chunk.subarray(taken)).then(
        () => {
          this.#onBytes();
          inflater.resume();
        },
        (err: Error) => this.#fail(err),
      );
    });
    this.#ended = new Promise((resolve, reject) => {
      inflater.once('end', () => resolve());
      inflater.once('error', (err) => {
        this.#fail(err);
        reject(err);
      });
    });
    this.#ended.catch(() => {});
  }

  region(): Buffer | undefined {
    if (this.#failed || this.#busy[this.#index]) return undefined;
    return this.#ring[this.#index];
  }

  filled(n: number): void {
    const index = this.#index;
    const chunk = (this.#ring[index] as Buffer).subarray(0, n);
    this.#hash.update(chunk);
    this.#busy[index] = true;
    this.#inflater.write(chunk, (err) => {
      this.#busy[index] = false;
      if (err) this.#fail(err);
      this.#wake();
    });
    this.#index = (index + 1) % SCRATCH_BUFFERS;
  }

  async ready(): Promise<void> {
    while (!this.#failed && this.#busy[this.#index]) {
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
      });
    }
    if (this.#failed) throw this.#failed;
  }

  /** Ends the compressed stream and waits until every decompressed byte is in the writer. */
  async finish(): Promise<void> {
    this.#inflater.end();
    await this.#ended;
    await this.#writing;
    if (this.#failed) throw this.#failed;
  }

  #fail(err: Error): void {
    this.#failed ??= err;
    this.#wake();
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }
}

/**
 * A zstd image: the socket reads into a small ring of buffers; each read is
 * hashed, then decoded on the spot straight into the writer's aligned
 * buffers (ZstdDecoder). When the writer is full, the undecoded rest waits
 * in its ring buffer, and the socket waits for a free one.
 */
export class ZstdTarget implements BodyTarget {
  readonly #writer: AlignedWriter;
  readonly #hash: Hash;
  readonly #decoder = new ZstdDecoder();
  readonly #onBytes: () => void;
  readonly #ring: Buffer[];
  /** Filled ring buffers not yet fully decoded, oldest first. */
  readonly #queue: { index: number; at: number; end: number }[] = [];
  readonly #queued: boolean[];
  #index = 0;
  #waitingForWriter = false;
  #failed: Error | undefined;
  #waiters: (() => void)[] = [];

  /** The most bytes the image may decode to (its announced virtual size, or the disk's). */
  readonly #limitBytes: number;

  constructor(writer: AlignedWriter, hash: Hash, onBytes: () => void, limitBytes: number) {
    this.#writer = writer;
    this.#hash = hash;
    this.#onBytes = onBytes;
    this.#limitBytes = limitBytes;
    this.#ring = Array.from({ length: SCRATCH_BUFFERS }, () => Buffer.allocUnsafeSlow(SCRATCH_BYTES));
    this.#queued = new Array(SCRATCH_BUFFERS).fill(false);
  }

  region(): Buffer | undefined {
    if (this.#failed || this.#queued[this.#index]) return undefined;
    return this.#ring[this.#index];
  }

  filled(n: number): void {
    const index = this.#index;
    this.#hash.update((this.#ring[index] as Buffer).subarray(0, n));
    this.#queued[index] = true;
    this.#queue.push({ index, at: 0, end: n });
    this.#index = (index + 1) % SCRATCH_BUFFERS;
    this.#decode();
  }

  async ready(): Promise<void> {
    while (!this.#failed && this.#queued[this.#index]) {
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
      });
    }
    if (this.#failed) throw this.#failed;
  }

  /** Waits until every byte received is decoded into the writer. */
  async finish(): Promise<void> {
    while (!this.#failed && this.#queue.length > 0) {
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
      });
    }
    this.#decoder.close();
    if (this.#failed) throw this.#failed;
  }

  /** Decodes queued input while the writer has room. */
  #decode(): void {
    try {
      while (this.#queue.length > 0) {
        const item = this.#queue[0] as { index: number; at: number; end: number };
        const free = this.#writer.region();
        if (!free) {
          this.#waitForWriter();
          return;
        }
        // Never past the announced size: at the limit, zstd may still take input (a frame's
        // footer) but must not produce output.
        const room = Math.max(0, this.#limitBytes - this.#writer.bytesAccepted);
        const region = free.length > room ? free.subarray(0, room) : free;
        const input = (this.#ring[item.index] as Buffer).subarray(item.at, item.end);
        const { consumed, produced } = this.#decoder.decode(input, region);
        item.at += consumed;
        if (produced > 0) {
          this.#writer.advance(produced);
          this.#onBytes();
        }
        const inputDone = item.at >= item.end;
        if (inputDone && (produced < region.length || region.length === 0)) {
          // Nothing of this input is left inside zstd (or nothing more may come out): the buffer is free.
          this.#queue.shift();
          this.#queued[item.index] = false;
          this.#wake();
        } else if (consumed === 0 && produced === 0) {
          if (region.length === 0) {
            throw new TaskFailure(
              Reason.SIZE_MISMATCH,
              `the image decompresses to more than the announced ${this.#limitBytes} bytes`,
            );
          }
          throw new Error('the zstd decoder made no progress');
        }
      }
    } catch (err) {
      this.#fail(err as Error);
    }
  }

  #waitForWriter(): void {
    if (this.#waitingForWriter) return;
    this.#waitingForWriter = true;
    this.#writer.ready().then(
      () => {
        this.#waitingForWriter = false;
        this.#decode();
      },
      (err: Error) => this.#fail(err),
    );
  }

  #fail(err: Error): void {
    this.#failed ??= err;
    this.#wake();
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }
}
