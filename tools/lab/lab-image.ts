/**
 * Lab disk images: raw images whose bytes a virtual node can verify after a deploy, so that
 * "booting from disk" proves the agent wrote the whole image, byte for byte.
 *
 * Layout (little-endian): one 512-byte header sector, then the payload up to the image's size.
 *
 *   0   8  magic `INGOTLAB`
 *   8   4  version (1)
 *   12  4  header size in bytes (512)
 *   16  8  payload size in bytes
 *   24 32  SHA-256 of the payload
 *   56  2  marker length, then the marker (UTF-8, at most 256 bytes)
 *
 * The payload is pseudo-random (xorshift32 seeded from the marker), so the same marker and size
 * always give the same image, and a deploy that skipped or repeated a block cannot match.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const MAGIC = Buffer.from('INGOTLAB', 'ascii');
const VERSION = 1;
/** Bytes before the payload. */
export const LAB_IMAGE_HEADER_BYTES = 512;
const MAX_MARKER_BYTES = 256;
const READ_CHUNK_BYTES = 1 << 20;

export interface BuiltLabImage {
  path: string;
  /** The whole image's size (header + payload). */
  sizeBytes: number;
  marker: string;
  /** SHA-256 (hex) of the whole image file: compare with `deviceDigest(disk, sizeBytes)`. */
  sha256: string;
}

/** What a disk holds, as `readLabImage` found it. */
export type LabImageCheck =
  | { valid: true; marker: string; sizeBytes: number }
  | { valid: false; reason: string };

/**
 * Writes a lab image of `sizeMiB` MiB to `path` (overwriting it). `marker` is what the virtual node
 * logs after booting it (`booted <marker> from disk`).
 */
export async function buildLabImage(
  path: string,
  opts: { sizeMiB: number; marker: string },
): Promise<BuiltLabImage> {
  const markerBytes = Buffer.from(opts.marker, 'utf8');
  if (markerBytes.length === 0 || markerBytes.length > MAX_MARKER_BYTES)
    throw new Error(`marker must be 1-${MAX_MARKER_BYTES} bytes of UTF-8`);
  if (!Number.isInteger(opts.sizeMiB) || opts.sizeMiB < 1) throw new Error('sizeMiB must be at least 1');
  const sizeBytes = opts.sizeMiB << 20;
  const image = Buffer.alloc(sizeBytes);
  const payload = image.subarray(LAB_IMAGE_HEADER_BYTES);
  let x = createHash('sha256').update(markerBytes).digest().readUInt32LE(0) || 1;
  for (let i = 0; i + 4 <= payload.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    payload.writeUInt32LE(x >>> 0, i);
  }
  MAGIC.copy(image, 0);
  image.writeUInt32LE(VERSION, 8);
  image.writeUInt32LE(LAB_IMAGE_HEADER_BYTES, 12);
  image.writeBigUInt64LE(BigInt(payload.length), 16);
  createHash('sha256').update(payload).digest().copy(image, 24);
  image.writeUInt16LE(markerBytes.length, 56);
  markerBytes.copy(image, 58);
  await writeFile(path, image);
  return { path, sizeBytes, marker: opts.marker, sha256: createHash('sha256').update(image).digest('hex') };
}

/**
 * Checks that `devicePath` starts with a complete lab image: the header, and a payload whose SHA-256
 * matches the header's. Drops the page cache of a block device first (the agent writes with
 * O_DIRECT, so cached pages may be older than the disk). Never throws for what the disk holds;
 * rejects only when the device cannot be opened.
 */
export async function readLabImage(devicePath: string): Promise<LabImageCheck> {
  await flushBuffers(devicePath);
  const handle = await open(devicePath, 'r');
  try {
    const header = Buffer.alloc(LAB_IMAGE_HEADER_BYTES);
    const { bytesRead } = await handle.read(header, 0, header.length, 0);
    if (bytesRead < header.length || !header.subarray(0, 8).equals(MAGIC))
      return { valid: false, reason: 'no lab image header' };
    if (header.readUInt32LE(8) !== VERSION) return { valid: false, reason: 'unknown lab image version' };
    const headerBytes = header.readUInt32LE(12);
    const payloadBytes = Number(header.readBigUInt64LE(16));
    const markerLength = header.readUInt16LE(56);
    if (headerBytes !== LAB_IMAGE_HEADER_BYTES || markerLength > MAX_MARKER_BYTES)
      return { valid: false, reason: 'corrupt lab image header' };
    const marker = header.subarray(58, 58 + markerLength).toString('utf8');
    const hash = createHash('sha256');
    const chunk = Buffer.alloc(READ_CHUNK_BYTES);
    let done = 0;
    while (done < payloadBytes) {
      const want = Math.min(chunk.length, payloadBytes - done);
      const r = await handle.read(chunk, 0, want, headerBytes + done);
      if (r.bytesRead === 0) return { valid: false, reason: 'the disk is smaller than the image' };
      hash.update(chunk.subarray(0, r.bytesRead));
      done += r.bytesRead;
    }
    if (!hash.digest().equals(header.subarray(24, 56)))
      return { valid: false, reason: 'payload digest mismatch' };
    return { valid: true, marker, sizeBytes: headerBytes + payloadBytes };
  } finally {
    await handle.close();
  }
}

/** SHA-256 (hex) of the first `bytes` bytes of a device or file, as the disk holds them. */
export async function deviceDigest(path: string, bytes: number): Promise<string> {
  await flushBuffers(path);
  const handle = await open(path, 'r');
  try {
    const hash = createHash('sha256');
    const chunk = Buffer.alloc(READ_CHUNK_BYTES);
    let done = 0;
    while (done < bytes) {
      const r = await handle.read(chunk, 0, Math.min(chunk.length, bytes - done), done);
      if (r.bytesRead === 0) break;
      hash.update(chunk.subarray(0, r.bytesRead));
      done += r.bytesRead;
    }
    return hash.digest('hex');
  } finally {
    await handle.close();
  }
}

async function flushBuffers(path: string): Promise<void> {
  if (!path.startsWith('/dev/')) return;
  await promisify(execFile)('blockdev', ['--flushbufs', path]).catch(() => undefined);
}
