import { borrowAligned } from './aligned-memory.ts';
import type { OpenDisk } from './block-device.ts';

/** Size of each zeroing write. @default 4 MiB */
const ZERO_BLOCK_BYTES = 4 << 20;

/** A byte range of a device: `[start, end)`. */
export interface Range {
  start: number;
  end: number;
}

/**
 * Zeroes ranges of a device (clipped to it), in page-aligned blocks so that
 * O_DIRECT handles take them; the unaligned edges go through the buffered
 * handle. Calls `onProgress` with the bytes zeroed so far. Durable on return.
 */
export async function zeroRanges(
  disk: OpenDisk,
  ranges: readonly Range[],
  opts: { signal?: AbortSignal; onProgress?: (bytes: number) => void } = {},
): Promise<number> {
  const loan = borrowAligned(ZERO_BLOCK_BYTES, { zeroed: true });
  const zeros = loan.buffer;
  try {
    return await zeroWith(zeros, disk, ranges, opts);
  } finally {
    loan.release();
  }
}

async function zeroWith(
  zeros: Buffer,
  disk: OpenDisk,
  ranges: readonly Range[],
  opts: { signal?: AbortSignal; onProgress?: (bytes: number) => void },
): Promise<number> {
  const block = disk.logicalBlockBytes;
  let total = 0;
  for (const range of ranges) {
    const start = Math.max(0, Math.min(range.start, disk.sizeBytes));
    const end = Math.max(start, Math.min(range.end, disk.sizeBytes));
    let at = start;
    while (at < end) {
      opts.signal?.throwIfAborted();
      let length: number;
      let handle = disk.buffered;
      if (disk.direct && at % block === 0 && end - at >= block) {
        length = Math.min(ZERO_BLOCK_BYTES, end - at);
        length -= length % block;
        handle = disk.handle;
      } else {
        // Up to the next block boundary through the page cache; whole blocks go direct again.
        length = disk.direct
          ? Math.min(block - (at % block), end - at)
          : Math.min(ZERO_BLOCK_BYTES, end - at);
      }
      const { bytesWritten } = await handle.write(zeros, 0, length, at);
      at += bytesWritten;
      total += bytesWritten;
      opts.onProgress?.(total);
    }
  }
  await Promise.all([disk.handle.datasync(), disk.buffered.datasync()]);
  return total;
}

/** Bytes zeroed at each end of a disk to remove partition tables (MBR, both GPT headers) and signatures. @default 4 MiB */
export const END_WIPE_BYTES = 4 << 20;

/**
 * The ranges that erase a disk's partition tables and the metadata of
 * RAID, LVM and file systems kept near either end: the start, the end of the
 * disk, and (after a failed deploy) the end of the span an image occupied,
 * where its backup GPT went.
 */
export function endRanges(diskBytes: number, imageSpanBytes?: number): Range[] {
  const ranges: Range[] = [
    { start: 0, end: END_WIPE_BYTES },
    { start: diskBytes - END_WIPE_BYTES, end: diskBytes },
  ];
  if (imageSpanBytes && imageSpanBytes > END_WIPE_BYTES && imageSpanBytes < diskBytes) {
    ranges.push({ start: imageSpanBytes - END_WIPE_BYTES, end: imageSpanBytes });
  }
  return ranges;
}
