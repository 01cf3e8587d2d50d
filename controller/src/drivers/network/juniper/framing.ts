/**
 * NETCONF over SSH message framing (RFC 6242). Both peers start with the
 * end-of-message framing of base:1.0 (`]]>]]>` after every message) for the
 * hello exchange; when both advertised base:1.1, every later message uses
 * chunked framing (`\n#<size>\n<bytes>` chunks, ended by `\n##\n`).
 */

export type Framing = 'eom' | 'chunked';

/** The base:1.0 end-of-message marker. */
export const EOM = ']]>]]>';
const EOM_BYTES = Buffer.from(EOM);
/** RFC 6242 §4.2: chunk-size is 1..4294967295. */
const MAX_CHUNK_SIZE = 4_294_967_295;
/** What one message may grow to before the peer is considered broken. @default 64 MiB */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export class FramingError extends Error {}

/** Frames one message for the wire. */
export function encodeMessage(message: string, framing: Framing): Buffer {
  const body = Buffer.from(message, 'utf8');
  if (framing === 'eom') return Buffer.concat([body, EOM_BYTES]);
  if (body.length === 0) throw new FramingError('a chunked message needs at least one byte');
  return Buffer.concat([Buffer.from(`\n#${body.length}\n`), body, Buffer.from('\n##\n')]);
}

/**
 * Splits a byte stream into messages. Feed it whatever the transport
 * delivers with `push` (a marker may straddle two reads), then take
 * messages with `next` until it returns undefined. Switching to chunked
 * framing between two `next` calls (right after the hello) reads the rest
 * of the buffer under the new framing.
 */
export class MessageDecoder {
  #framing: Framing = 'eom';
  #buffer: Buffer = Buffer.alloc(0);
  /** Chunked framing: the chunks of the message being assembled. */
  #chunks: Buffer[] = [];
  #chunkedBytes = 0;
  readonly #maxBytes: number;

  constructor(opts: { maxMessageBytes?: number } = {}) {
    this.#maxBytes = opts.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  }

  get framing(): Framing {
    return this.#framing;
  }

  setFraming(framing: Framing): void {
    this.#framing = framing;
  }

  push(data: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? data : Buffer.concat([this.#buffer, data]);
  }

  /** The next complete message, or undefined until more bytes arrive. Throws FramingError on a broken stream. */
  next(): string | undefined {
    return this.#framing === 'eom' ? this.#nextEom() : this.#nextChunked();
  }

  #nextEom(): string | undefined {
    const at = this.#buffer.indexOf(EOM_BYTES);
    if (at === -1) {
      if (this.#buffer.length > this.#maxBytes) throw new FramingError('message exceeds the size limit');
      return undefined;
    }
    const message = this.#buffer.subarray(0, at).toString('utf8');
    this.#buffer = this.#buffer.subarray(at + EOM_BYTES.length);
    return message;
  }

  #nextChunked(): string | undefined {
    for (;;) {
      // Junos writes a newline after the hello's `]]>]]>`: between messages, skip whitespace that
      // is not the LF of a chunk header.
      while (this.#chunks.length === 0 && this.#buffer.length >= 2 && isSpace(this.#buffer[0])) {
        if (this.#buffer[0] === 0x0a && this.#buffer[1] === 0x23) break;
        this.#buffer = this.#buffer.subarray(1);
      }
      // Every chunk header and the end marker start with LF '#'.
      if (this.#buffer.length < 4) return undefined;
      if (this.#buffer[0] !== 0x0a || this.#buffer[1] !== 0x23) {
        throw new FramingError(
          `expected a chunk header (LF #), got ${JSON.stringify(this.#buffer.subarray(0, 16).toString('latin1'))}`,
        );
      }
      if (this.#buffer[2] === 0x23) {
        if (this.#buffer[3] !== 0x0a) throw new FramingError('malformed end-of-chunks marker');
        this.#buffer = this.#buffer.subarray(4);
        if (this.#chunks.length === 0) throw new FramingError('end-of-chunks marker without a chunk');
        const message = Buffer.concat(this.#chunks).toString('utf8');
        this.#chunks = [];
        this.#chunkedBytes = 0;
        return message;
      }
      const lf = this.#buffer.indexOf(0x0a, 2);
      if (lf === -1) {
        if (this.#buffer.length > 13) throw new FramingError('chunk size has more than 10 digits');
        return undefined;
      }
      const digits = this.#buffer.subarray(2, lf).toString('latin1');
      if (!/^[1-9][0-9]{0,9}$/.test(digits) || Number(digits) > MAX_CHUNK_SIZE) {
        throw new FramingError(`bad chunk size ${JSON.stringify(digits)}`);
      }
      const size = Number(digits);
      if (this.#chunkedBytes + size > this.#maxBytes)
        throw new FramingError('message exceeds the size limit');
      if (this.#buffer.length < lf + 1 + size) return undefined;
      this.#chunks.push(this.#buffer.subarray(lf + 1, lf + 1 + size));
      this.#chunkedBytes += size;
      this.#buffer = this.#buffer.subarray(lf + 1 + size);
    }
  }
}

const isSpace = (byte: number | undefined): boolean =>
  byte === 0x0a || byte === 0x0d || byte === 0x20 || byte === 0x09;
