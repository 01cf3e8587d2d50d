import type { Hash } from 'node:crypto';
import type { Transform } from 'node:stream';
import type { AlignedWriter } from '../disk/aligned-writer.ts';
import { collectYoungGarbage } from '../gc.ts';
import type { BodyTarget } from '../transport/download.ts';

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
 * A compressed image: the socket reads into a small ring of buffers; each
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
