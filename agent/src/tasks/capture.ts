import type { CaptureSpec, UnreadableRange } from '../../../build/gen/ingot/v1/task.ts';
import { isMediumError, openDiskReadOnly, type ReadOnlyDisk } from '../disk/block-reader.ts';
import { checkPartitionTable } from '../disk/partition-table.ts';
import { CaptureStream } from '../transport/capture-stream.ts';
import { TcpSender } from '../transport/tcp-sender.ts';
import type { TaskContext, TaskOutcomeValue } from './context.ts';
import { Reason, TaskFailure } from './task-failure.ts';

/** Read size when the spec gives none (the controller fills it in; older controllers may not). @default 8 MiB */
const DEFAULT_BLOCK_BYTES = 8 << 20;
/**
 * When a block cannot be read, it is read again in pieces of this size so
 * that only the unreadable pieces become zeros. @default 64 KiB (at most 128
 * retries for an 8 MiB block: cheap next to the disk's own retries)
 */
const RETRY_CHUNK_BYTES = 64 << 10;

/** `host:port` or `[v6]:port` → its parts (the controller validated the syntax). */
function splitReceiver(receiver: string): { host: string; port: number } {
  const colon = receiver.lastIndexOf(':');
  return {
    host: receiver.slice(0, colon).replace(/^\[(.*)\]$/, '$1'),
    port: Number(receiver.slice(colon + 1)),
  };
}

/**
 * Reads a disk with `dd` semantics (`bs`, `skip`, `count`, and
 * `conv=sync,noerror` unless strict) and streams the bytes to a TCP
 * receiver, byte-exact and with nothing added (zstd-compressed with
 * `compress`, for the image store), hashing what it sends on the way.
 * Checks the partition table first and reports what it found. The disk is
 * opened read-only. Reads and sends overlap: one block is read while the
 * previous one is being sent; a slow receiver slows the reads (two blocks of
 * memory, whatever the disk size).
 */
export async function capture(spec: CaptureSpec, ctx: TaskContext): Promise<TaskOutcomeValue> {
  const { log, signal, progress } = ctx;
  const blockBytes = Number(spec.blockSizeBytes) || DEFAULT_BLOCK_BYTES;
  const disk = await openDiskReadOnly(spec.disk, ctx.disks);
  try {
    progress.update('checking', 0, 0);
    const table = await checkPartitionTable(
      async (offset, length) => {
        const buffer = Buffer.alloc(length);
        await disk.readFully(buffer, length, offset);
        return buffer;
      },
      disk.sizeBytes,
      disk.logicalBlockBytes,
    );
    for (const warning of table.warnings) log.warn({ disk: disk.path }, warning);
    const start = Number(spec.skip) * blockBytes;
    let end = disk.sizeBytes;
    if (spec.toLastPartition) {
      if (table.partitionCount === 0) {
        throw new TaskFailure(
          Reason.NO_PARTITION_TABLE,
          `${spec.disk} has no partitions (${table.warnings.join('; ')}); capture it without --to-last-partition`,
          { metadata: { disk: spec.disk } },
        );
      }
      end = Math.min(end, table.lastPartitionEndBytes);
    }
    if (spec.count) end = Math.min(end, start + Number(spec.count) * blockBytes);
    if (start >= end) {
      throw new TaskFailure(
        Reason.NOTHING_TO_CAPTURE,
        `nothing to capture: the copy would start at byte ${start} (skip ${spec.skip} × ${blockBytes}) but ends at byte ${end}`,
        { metadata: { disk: spec.disk } },
      );
    }
    const total = end - start;
    const { host, port } = splitReceiver(spec.receiver);
    progress.update('connecting', 0, total, `to ${spec.receiver}`);
    const wire = new CaptureStream(await TcpSender.connect(host, port, signal), { compress: spec.compress });
    log.info(
      { disk: disk.path, receiver: spec.receiver, start, bytes: total, blockBytes, compress: spec.compress },
      'capture started',
    );
    try {
      const unreadable = await stream(disk, wire, { start, end, blockBytes, strict: spec.strict, ctx });
      const sent = await wire.end();
      progress.update('done', total, total);
      log.info({ disk: disk.path, bytes: total, ...sent, unreadable: unreadable.length }, 'capture finished');
      return { ...sent, bytesRead: total, unreadable, partitionTable: table };
    } catch (err) {
      wire.destroy();
      throw err;
    }
  } finally {
    await disk.close();
  }
}

/** Reads `start`–`end` block by block into `wire`; returns the ranges sent as zeros. */
async function stream(
  disk: ReadOnlyDisk,
  wire: CaptureStream,
  opts: { start: number; end: number; blockBytes: number; strict: boolean; ctx: TaskContext },
): Promise<UnreadableRange[]> {
  const { start, end, blockBytes, ctx } = opts;
  const total = end - start;
  const unreadable: UnreadableRange[] = [];
  // Block i is read into buffers[i % 2] once block i - 2's send has finished (awaited before sending i - 1).
  const buffers = [Buffer.allocUnsafe(blockBytes), Buffer.allocUnsafe(blockBytes)];
  let sending: Promise<void> = Promise.resolve();
  let block = 0;
  ctx.progress.update('capturing', 0, total);
  for (let position = start; position < end; position += blockBytes, block++) {
    ctx.signal.throwIfAborted();
    const length = Math.min(blockBytes, end - position);
    const buffer = buffers[block % 2] as Buffer;
    const bad = await readBlock(disk, buffer, length, position, opts.strict);
    for (const range of bad) {
      const previous = unreadable.at(-1);
      if (previous && previous.offsetBytes + previous.lengthBytes === range.offsetBytes) {
        previous.lengthBytes += range.lengthBytes;
      } else {
        unreadable.push(range);
      }
      ctx.log.warn(
        { disk: disk.path, offset: range.offsetBytes, bytes: range.lengthBytes, error: range.error },
        'unreadable; sending zeros',
      );
      ctx.progress.update(
        'capturing',
        position - start,
        total,
        `unreadable: ${range.lengthBytes} bytes at offset ${range.offsetBytes}; sent as zeros`,
      );
    }
    await sending;
    sending = wire.write(buffer.subarray(0, length));
    // Awaited on the next round; a failure must not count as unhandled meanwhile.
    sending.catch(() => {});
    ctx.progress.update('capturing', position + length - start, total);
  }
  await sending;
  return unreadable;
}

/**
 * Reads one block. An unreadable block is read again in 64 KiB pieces;
 * the pieces that still fail are zeroed and returned. Strict captures fail
 * at the first unreadable block instead.
 */
async function readBlock(
  disk: ReadOnlyDisk,
  buffer: Buffer,
  length: number,
  position: number,
  strict: boolean,
): Promise<UnreadableRange[]> {
  try {
    await disk.readFully(buffer, length, position);
    return [];
  } catch (err) {
    if (!isMediumError(err)) throw err;
    if (strict) {
      throw new TaskFailure(
        Reason.DISK_READ_FAILED,
        `${disk.path} cannot be read at bytes ${position}–${position + length} (${(err as Error).message}); capture without --strict to send zeros for unreadable blocks`,
        { metadata: { disk: disk.path, offset: String(position), length: String(length) }, cause: err },
      );
    }
  }
  const bad: UnreadableRange[] = [];
  for (let done = 0; done < length; done += RETRY_CHUNK_BYTES) {
    const piece = Math.min(RETRY_CHUNK_BYTES, length - done);
    const view = buffer.subarray(done, done + piece);
    try {
      await disk.readFully(view, piece, position + done);
    } catch (err) {
      if (!isMediumError(err)) throw err;
      view.fill(0);
      const previous = bad.at(-1);
      if (previous && previous.offsetBytes + previous.lengthBytes === position + done) {
        previous.lengthBytes += piece;
      } else {
        bad.push({ offsetBytes: position + done, lengthBytes: piece, error: (err as Error).message });
      }
    }
  }
  return bad;
}
