import type { FileHandle } from 'node:fs/promises';
import { alignedBuffer } from './aligned-memory.ts';

/** Memory alignment O_DIRECT needs for buffers: a page covers every logical block size in use. */
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
 * whatever the image size. Buffers are page-aligned, as O_DIRECT requires.
 */
export class AlignedWriter {
  readonly #handle: FileHandle;
  readonly #buffered: FileHandle;
  readonly #direct: boolean;
  readonly #blockBytes: number;
  readonly #logicalBlockBytes: number;
  readonly #head: Buffer;
  readonly #slots: Buffer[];
  readonly #pending: (Promise<void> | undefined)[];
  #headFill = 0;
  #slot = 0;
  #fill = 0;
  /** Device offset of the current slot's first byte. */
  #offset: number;
  #written = 0;
  #failed: Error | undefined;

  constructor(opts: AlignedWriterOptions) {
    const blockBytes = opts.blockBytes ?? 8 << 20;
    const inFlight = opts.inFlight ?? 3;
    const headBytes = opts.headBytes ?? 1 << 20;
    if (blockBytes % ALIGNMENT || headBytes % ALIGNMENT || headBytes <= 0) {
      throw new Error('block and head sizes must be positive multiples of 4096');
    }
    const total = headBytes + blockBytes * inFlight;
    const memory = alignedBuffer(total);
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

  /** Copies `chunk` in; resolves once its bytes are buffered (a full block is then on its way to the device). */
  async write(chunk: Buffer): Promise<void> {
    if (this.#failed) throw this.#failed;
    let at = 0;
    if (this.#headFill < this.#head.length) {
      const n = chunk.copy(this.#head, this.#headFill, 0);
      this.#headFill += n;
      at = n;
    }
    while (at < chunk.length) {
      const n = chunk.copy(this.#slots[this.#slot] as Buffer, this.#fill, at);
      this.#fill += n;
      at += n;
      if (this.#fill === this.#blockBytes) await this.#submit();
    }
  }

  /** Writes what is buffered (but not the head) and waits for every write. */
  async flush(): Promise<void> {
    if (this.#failed) throw this.#failed;
    const slot = this.#slots[this.#slot] as Buffer;
    if (this.#fill > 0) {
      const length = this.#fill;
      const offset = this.#offset;
      await this.#await(this.#slot);
      await this.#writeUnaligned(slot, length, offset);
      this.#written += length;
      this.#offset += length;
      this.#fill = 0;
    }
    await Promise.all(this.#pending);
    if (this.#failed) throw this.#failed;
  }

  /** Writes the held-back head and makes everything durable. Call after `flush()` and verification. */
  async commit(): Promise<void> {
    await this.flush();
    await this.#writeUnaligned(this.#head, this.#headFill, 0);
    this.#written += this.#headFill;
    await Promise.all([this.#handle.datasync(), this.#buffered.datasync()]);
  }

  async #submit(): Promise<void> {
    const index = this.#slot;
    const buffer = this.#slots[index] as Buffer;
    const offset = this.#offset;
    const length = this.#fill;
    this.#pending[index] = this.#writeFully(this.#handle, buffer, length, offset).then(
      () => {
        this.#written += length;
      },
      (err: Error) => {
        this.#failed ??= err;
      },
    );
    this.#offset += length;
    this.#fill = 0;
    this.#slot = (index + 1) % this.#slots.length;
    // The next slot must be free before it is filled again.
    await this.#await(this.#slot);
  }

  async #await(index: number): Promise<void> {
    await this.#pending[index];
    this.#pending[index] = undefined;
    if (this.#failed) throw this.#failed;
  }

  /** The aligned part through O_DIRECT, the rest (under one logical block) through the page cache. */
  async #writeUnaligned(buffer: Buffer, length: number, offset: number): Promise<void> {
    const aligned = this.#direct ? length - (length % this.#logicalBlockBytes) : length;
    if (aligned > 0) await this.#writeFully(this.#handle, buffer, aligned, offset);
    if (aligned < length) {
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
