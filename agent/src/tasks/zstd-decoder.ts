import { constants, createZstdDecompress } from 'node:zlib';

/** What a zlib stream keeps inside: the native handle and the array it reports through. */
interface ZlibInternals {
  _handle?: {
    writeSync(
      flush: number,
      input: Uint8Array,
      inOff: number,
      inLen: number,
      out: Uint8Array,
      outOff: number,
      outLen: number,
    ): void;
    close(): void;
  };
  /** [output bytes left, input bytes left] after each write. */
  _writeState?: Uint32Array;
}

/**
 * zstd decoding into memory the caller owns. Node's zstd stream allocates a
 * fresh output buffer per chunk and hands each one to the main thread from
 * the thread pool; for an image that is gigabytes of garbage and thousands
 * of thread hops, three times slower than zstd itself. This drives the
 * same native handle synchronously (as `zlib.zstdDecompressSync` does) with
 * the caller's output buffer, so the bytes land straight in the aligned
 * write buffers, at zstd's own speed. It relies on zlib internals of the
 * Node.js the agent executable embeds; the deploy tests exercise them.
 */
export class ZstdDecoder {
  readonly #stream = createZstdDecompress();
  readonly #handle: NonNullable<ZlibInternals['_handle']>;
  readonly #state: Uint32Array;
  #error: Error | undefined;

  constructor() {
    const internals = this.#stream as unknown as ZlibInternals;
    if (
      typeof internals._handle?.writeSync !== 'function' ||
      !(internals._writeState instanceof Uint32Array)
    ) {
      throw new Error('this Node.js has no synchronous zstd handle');
    }
    this.#handle = internals._handle;
    this.#state = internals._writeState;
    this.#stream.on('error', (err) => {
      this.#error = err;
    });
  }

  /** Decodes from `input` into `output`; returns the bytes of input consumed and of output produced. */
  decode(input: Uint8Array, output: Uint8Array): { consumed: number; produced: number } {
    this.#handle.writeSync(constants.ZSTD_e_continue, input, 0, input.length, output, 0, output.length);
    // A decoding error destroys the stream at once (its 'error' event comes later) and leaves the
    // state array as it was: check the stream before trusting the counts.
    const failed = (this.#stream as unknown as { errored?: Error | null }).errored ?? this.#error;
    if (failed) throw failed;
    return {
      consumed: input.length - (this.#state[1] ?? 0),
      produced: output.length - (this.#state[0] ?? 0),
    };
  }

  close(): void {
    this.#stream.destroy();
  }
}
