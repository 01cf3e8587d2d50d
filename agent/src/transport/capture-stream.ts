import { createHash } from 'node:crypto';
import { constants, createZstdCompress, type ZstdCompress } from 'node:zlib';
import type { TcpSender } from './tcp-sender.ts';

/**
 * zstd level for compressed captures: the fastest, so that compressing
 * keeps up with the disk and the network; the controller stores the stream
 * as it comes. @default 1
 */
const ZSTD_LEVEL = 1;
/** Compressed bytes per chunk sent: zlib's 16 KiB default makes compressing three times slower. @default 1 MiB */
const ZSTD_CHUNK_BYTES = 1 << 20;

/** What went on the wire. */
export interface WireTotals {
  /** SHA-256 (hex) of the bytes sent (compressed ones when compressing). */
  sha256: string;
  bytesSent: number;
}

/**
 * A capture's bytes on their way to the receiver: as they are (byte-exact,
 * like `dd | nc`), or zstd-compressed for the image store. Either way what
 * goes on the wire is counted and hashed, so the controller can check it.
 */
export class CaptureStream {
  readonly #sender: TcpSender;
  readonly #hash = createHash('sha256');
  #bytesSent = 0;
  readonly #zstd: ZstdCompress | undefined;
  /** Compressed: sends what the compressor produces; rejects when the connection broke. */
  readonly #pump: Promise<void> | undefined;

  constructor(sender: TcpSender, opts: { compress: boolean }) {
    this.#sender = sender;
    if (!opts.compress) return;
    const zstd = createZstdCompress({
      chunkSize: ZSTD_CHUNK_BYTES,
      params: { [constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL },
    });
    this.#zstd = zstd;
    this.#pump = (async () => {
      for await (const chunk of zstd as AsyncIterable<Buffer>) await this.#send(chunk);
    })();
    // Seen by the next write or end; a failure in between must not count as unhandled.
    this.#pump.catch(() => zstd.destroy());
  }

  /** Resolves once `data` may be reused (sent, or taken by the compressor); rejects when the connection broke. */
  write(data: Buffer): Promise<void> {
    const zstd = this.#zstd;
    if (!zstd) return this.#send(data);
    const taken = new Promise<void>((resolve, reject) => {
      zstd.write(data, (err) => (err ? reject(err) : resolve()));
    });
    // A broken connection stops the pump, and with it the compressor: its failure is the answer.
    return Promise.race([taken, this.#pump?.then(() => taken)]) as Promise<void>;
  }

  /** Flushes the compressor, sends FIN and waits for the receiver to close. */
  async end(): Promise<WireTotals> {
    if (this.#zstd) {
      this.#zstd.end();
      await this.#pump;
    }
    await this.#sender.end();
    return { sha256: this.#hash.digest('hex'), bytesSent: this.#bytesSent };
  }

  /** Drops the connection at once: the receiver sees it break. */
  destroy(): void {
    this.#zstd?.destroy();
    this.#sender.destroy();
  }

  #send(chunk: Buffer): Promise<void> {
    this.#hash.update(chunk);
    this.#bytesSent += chunk.length;
    return this.#sender.write(chunk);
  }
}
