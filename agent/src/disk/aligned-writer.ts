import type { FileHandle } from 'node:fs/promises';
import { type AlignedLoan, borrowAligned } from './aligned-memory.ts';

/** Buffers are page-aligned and block sizes multiples of a page, as O_DIRECT requires. */
const ALIGNMENT = 4096;

export interface AlignedWriterOptions {
  /** O_DIRECT handle (or a buffered one when `direct` is false). */
  handle: FileHandle;
  /** Handle without O_DIRECT for the unaligned end of the data. */
  buffered: FileHandle;
  direct: boolean;
  /** The device's logical block size: O_DIRECT writes are whole blocks. @default 512 */
  logicalBlockBytes?: number;
  /** Size of each write. @default 8 MiB */
  blockBytes?: number;
  /** Writes in flight at once. @default 3 */
  inFlight?: number;
  /**
   * The first bytes (where the partition table lives) are held back and
   * written only by `commit()`, after the data was verified: a device whose
   * image turned out corrupt or incomplete never shows a new partition
   * table. Must be a multiple of 4096. @default 1 MiB
   */
  headBytes?: number;
}

/**
 * Writes a byte stream to a block device in large, page-aligned blocks
 * with a few writes in flight, so the device is never idle while the next
 * block fills. Memory is fixed: `inFlight` blocks plus the held-back head,
 * whatever the image size.
 *
 * Data comes in two ways: `region()`/`advance()` let a producer (a socket
 * read) put bytes straight into the buffer being filled, without a copy;
 * `write()` copies a chunk in.
 */
export class AlignedWriter {
  readonly #handle: FileHandle;
  readonly #buffered: FileHandle;
  readonly #direct: boolean;
  readonly #blockBytes: number;
  readonly #logicalBlockBytes: number;
  readonly #memory: AlignedLoan;
  readonly #head: Buffer;
  readonly #slots: Buffer[];
  /** The write of each slot while it is in flight. */
  readonly #pending: (Promise<void> | undefined)[];
  #headFill = 0;
  #slot = 0;
  #fill = 0;
  /** Device offset of the current slot's first byte. */
  #offset: number;
  #written = 0;
  #failed: Error | undefined;
  /** Whether anything went through the page cache (then its flush also writes that back). */
  #usedBuffered = false;

  constructor(opts: AlignedWriterOptions) {
    const blockBytes = opts.blockBytes ?? 8 << 20;
    const inFlight = opts.inFlight ?? 3;
    const headBytes = opts.headBytes ?? 1 << 20;
    if (blockBytes % ALIGNMENT || headBytes % ALIGNMENT || headBytes <= 0 || inFlight < 1) {
      throw new Error('block and head sizes must be positive multiples of 4096');
    }
    this.#memory = borrowAligned(headBytes + blockBytes * inFlight);
    const memory = this.#memory.buffer;
    this.#head = memory.subarray(0, headBytes);
    this.#slots = Array.from({ length: inFlight }, (_, i) =>
      memory.subarray(headBytes + i * blockBytes, headBytes + (i + 1) * blockBytes),
    );
    this.#pending = new Array(inFlight).fill(undefined);
    this.#handle = opts.handle;
    this.#buffered = opts.buffered;
    this.#direct = opts.direct;
    this.#blockBytes = blockBytes;
    this.#logicalBlockBytes = opts.logicalBlockBytes ?? 512;
    this.#offset = headBytes;
  }

  /** Bytes accepted so far (held back or in flight included). */
  get bytesAccepted(): number {
    return this.#headFill + this.#offset - this.#head.length + this.#fill;
  }

  /** Bytes the device has confirmed. */
  get bytesWritten(): number {
    return this.#written;
  }

  /** The free part of the buffer being filled; undefined while that buffer is still being written (or a write failed). */
  region(): Buffer | undefined {
    if (this.#failed) return undefined;
    if (this.#headFill < this.#head.length) return this.#head.subarray(this.#headFill);
    if (this.#pending[this.#slot]) return undefined;
    return (this.#slots[this.#slot] as Buffer).subarray(this.#fill);
  }

  /** `n` bytes were placed at the start of the last region; a full block goes to the device. */
  advance(n: number): void {
    if (this.#headFill < this.#head.length) {
      this.#headFill += n;
      return;
    }
    this.#fill += n;
    if (this.#fill === this.#blockBytes) this.#submit();
  }

  /** Resolves once `region()` has room again; rejects when a write failed. */
  async ready(): Promise<void> {
    await this.#pending[this.#slot];
    if (this.#failed) throw this.#failed;
  }

  /** Copies as much of `chunk` as fits without waiting; returns how many bytes it took. */
  writeSome(chunk: Buffer): number {
    let at = 0;
    while (at < chunk.length) {
      const region = this.region();
      if (!region) break;
      const n = chunk.copy(region, 0, at);
      at += n;
      this.advance(n);
    }
    return at;
  }

  /** Copies `chunk` in, waiting for room when every buffer is in flight. */
  async write(chunk: Buffer): Promise<void> {
    let at = this.writeSome(chunk);
    while (at < chunk.length) {
      let region = this.region();
      while (!region) {
        await this.ready();
        region = this.region();
      }
      const n = chunk.copy(region, 0, at);
      at += n;
      this.advance(n);
    }
  }

  /** Writes what is buffered (but not the head) and waits for every write. */
  async flush(): Promise<void> {
    await this.ready();
    if (this.#fill > 0) {
      const length = this.#fill;
      await this.#writeUnaligned(this.#slots[this.#slot] as Buffer, length, this.#offset);
      this.#written += length;
      this.#offset += length;
      this.#fill = 0;
    }
    await Promise.all(this.#pending);
    if (this.#failed) throw this.#failed;
  }

  /**
   * Writes the held-back head and makes everything durable: one flush of the
   * device (its write cache included), through the handle that leaves
   * nothing behind in the page cache.
   */
  async commit(): Promise<void> {
    await this.flush();
    await this.#writeUnaligned(this.#head, this.#headFill, 0);
    this.#written += this.#headFill;
    await (this.#usedBuffered ? this.#buffered : this.#handle).datasync();
  }

  /** Gives the buffers back for the next task, once every write has settled. */
  async release(): Promise<void> {
    await Promise.allSettled(this.#pending);
    this.#memory.release();
  }

  #submit(): void {
    const index = this.#slot;
    const length = this.#fill;
    const write = this.#writeFully(this.#handle, this.#slots[index] as Buffer, length, this.#offset).then(
      () => {
        this.#written += length;
      },
      (err: Error) => {
        this.#failed ??= err;
      },
    );
    this.#pending[index] = write.then(() => {
      this.#pending[index] = undefined;
    });
    this.#offset += length;
    this.#fill = 0;
    this.#slot = (index + 1) % this.#slots.length;
  }

  /** The aligned part through O_DIRECT, the rest (under one logical block) through the page cache. */
  async #writeUnaligned(buffer: Buffer, length: number, offset: number): Promise<void> {
    const aligned = this.#direct ? length - (length % this.#logicalBlockBytes) : length;
    if (aligned > 0) await this.#writeFully(this.#handle, buffer, aligned, offset);
    if (aligned < length) {
      this.#usedBuffered = true;
      await this.#writeFully(this.#buffered, buffer.subarray(aligned), length - aligned, offset + aligned);
    }
  }

  async #writeFully(handle: FileHandle, buffer: Buffer, length: number, offset: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const { bytesWritten } = await handle.write(buffer, done, length - done, offset + done);
      if (bytesWritten === 0) throw new Error(`the device accepted no bytes at offset ${offset + done}`);
      done += bytesWritten;
    }
  }
}
