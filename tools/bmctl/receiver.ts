import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { type AddressInfo, createServer, type Socket } from 'node:net';

/** `[HOST:]PORT` of `--listen`; no host listens on every address (like `nc -l PORT`). Undefined when malformed. */
export function parseListen(text: string): { host: string | undefined; port: number } | undefined {
  const m = /^(?:(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):)?([0-9]{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2], port };
}

export interface ReceiveResult {
  sizeBytes: number;
  sha256: string;
  /** The sender's address, `HOST:PORT`. */
  peer: string;
  /** The connection broke (reset) instead of ending cleanly: the file is short. */
  broken: string | undefined;
}

export interface ReceiveOptions {
  host: string | undefined;
  port: number;
  /** Created, or replaced with `force`; otherwise an existing file is refused (EEXIST). */
  path: string;
  force: boolean;
  /** Once listening, with the bound address (the real port when `port` is 0). */
  onListening: (address: string) => void;
  /** Bytes received so far, after every chunk. */
  onBytes: (bytes: number) => void;
  signal?: AbortSignal;
}

/**
 * The `nc -l PORT > FILE` side of a capture: accepts one TCP connection,
 * stops listening, and writes every byte to the file (flushed to disk at
 * the end), hashing as it goes. Nothing is expected around the bytes: a
 * stock `dd | nc` feeds it as well as an agent does.
 */
export async function receiveOne(opts: ReceiveOptions): Promise<ReceiveResult> {
  const file: FileHandle = await open(opts.path, opts.force ? 'w' : 'wx');
  try {
    const socket = await acceptOne(opts);
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const hash = createHash('sha256');
    let size = 0;
    let broken: string | undefined;
    try {
      for await (const chunk of socket as AsyncIterable<Buffer>) {
        hash.update(chunk);
        // Awaiting each write pauses the socket: a slow disk slows the sender.
        await file.write(chunk);
        size += chunk.length;
        opts.onBytes(size);
      }
    } catch (err) {
      broken = (err as Error).message;
    } finally {
      socket.destroy();
    }
    await file.sync();
    return { sizeBytes: size, sha256: hash.digest('hex'), peer, broken };
  } finally {
    await file.close();
  }
}

async function acceptOne(opts: ReceiveOptions): Promise<Socket> {
  const server = createServer({ pauseOnConnect: true });
  try {
    return await new Promise<Socket>((resolve, reject) => {
      const onAbort = () => reject(opts.signal?.reason ?? new Error('aborted'));
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      server.once('error', reject);
      server.once('connection', (socket: Socket) => {
        opts.signal?.removeEventListener('abort', onAbort);
        resolve(socket);
      });
      server.listen({ host: opts.host, port: opts.port }, () => {
        const a = server.address() as AddressInfo;
        opts.onListening(a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
      });
    });
  } finally {
    // One connection only: later ones are refused.
    server.close();
  }
}
