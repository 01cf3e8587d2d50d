import type { WipeSpec } from '../../../build/gen/ingot/v1/task.ts';
import { openDisk } from '../disk/block-device.ts';
import { endRanges, zeroRanges } from '../disk/zero.ts';
import type { TaskContext, TaskOutcomeValue } from './context.ts';

/**
 * Removes what makes a disk bootable or recognisable: the partition tables
 * (MBR, primary and backup GPT) and the RAID, LVM and file-system
 * signatures near both ends; `full` zeroes every byte instead.
 */
export async function wipe(spec: WipeSpec, ctx: TaskContext): Promise<TaskOutcomeValue> {
  const disk = await openDisk(spec.disk, ctx.disks);
  try {
    const ranges = spec.full ? [{ start: 0, end: disk.sizeBytes }] : endRanges(disk.sizeBytes);
    const total = ranges.reduce(
      (sum, r) => sum + Math.max(0, Math.min(r.end, disk.sizeBytes) - Math.max(0, r.start)),
      0,
    );
    ctx.log.info({ disk: disk.path, full: spec.full, bytes: total }, 'wipe started');
    ctx.progress.update('wiping', 0, total);
    const written = await zeroRanges(disk, ranges, {
      signal: ctx.signal,
      onProgress: (bytes) => ctx.progress.update('wiping', bytes, total),
    });
    ctx.progress.update('done', written, total);
    ctx.log.info({ disk: disk.path, bytes: written }, 'wipe finished');
    return { bytesWritten: written };
  } finally {
    await disk.close();
  }
}
