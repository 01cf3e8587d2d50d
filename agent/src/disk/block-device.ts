import { constants } from 'node:fs';
import { type FileHandle, open, readFile, realpath, stat } from 'node:fs/promises';
import { Reason, TaskFailure } from '../tasks/task-failure.ts';

/** Which block devices tasks may write. */
export interface DiskPolicy {
  /**
   * Devices given with `--disk-allow` (resolved paths). When empty, any
   * whole disk the hardware inventory lists is allowed (the bootstrap image's
   * case: the node is being provisioned, all its disks are fair game).
   */
  allow: readonly string[];
  /** Whole disks found on the machine (resolved paths), for the empty allow list. */
  inventoryDisks: () => Promise<readonly string[]>;
}

/** A block device opened for writing. */
export interface OpenDisk {
  path: string;
  sizeBytes: number;
  logicalBlockBytes: number;
  /** Opened with O_DIRECT when the device allows it (then writes must be aligned); see `direct`. */
  handle: FileHandle;
  direct: boolean;
  /** The same device without O_DIRECT, for unaligned tails. */
  buffered: FileHandle;
  close(): Promise<void>;
}

/** Facts about a block device from sysfs. */
export async function describeDevice(
  path: string,
): Promise<{ real: string; sizeBytes: number; logicalBlockBytes: number }> {
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    throw new TaskFailure(Reason.DISK_NOT_FOUND, `${path} does not exist on this machine`, {
      metadata: { disk: path },
    });
  }
  const s = await stat(real);
  if (!s.isBlockDevice()) {
    throw new TaskFailure(Reason.DISK_NOT_FOUND, `${path} is not a block device`, {
      metadata: { disk: path },
    });
  }
  const major = Math.floor(s.rdev / 256) & 0xfff;
  const minor = (s.rdev & 0xff) | ((s.rdev >> 12) & 0xfff00);
  const sys = `/sys/dev/block/${major}:${minor}`;
  const sectors = Number((await readFile(`${sys}/size`, 'utf8')).trim());
  const logical = Number(
    (
      await readFile(`${sys}/queue/logical_block_size`, 'utf8').catch(() =>
        readFile(`${sys}/../queue/logical_block_size`, 'utf8').catch(() => '512'),
      )
    ).trim(),
  );
  return { real, sizeBytes: sectors * 512, logicalBlockBytes: logical || 512 };
}

/** Throws DISK_NOT_ALLOWED unless the policy lets tasks write `real`. */
export async function checkAllowed(policy: DiskPolicy, path: string, real: string): Promise<void> {
  const allowed = policy.allow.length > 0 ? policy.allow : await policy.inventoryDisks();
  if (!allowed.includes(real)) {
    throw new TaskFailure(
      Reason.DISK_NOT_ALLOWED,
      policy.allow.length > 0
        ? `${path} is not among the disks this agent may write (--disk-allow ${policy.allow.join(', ')})`
        : `${path} is not a whole disk of this machine`,
      { metadata: { disk: path } },
    );
  }
}

/**
 * Opens a disk for writing, exclusively (O_EXCL on a block device fails
 * while it, or a partition of it, is mounted or otherwise claimed), with
 * O_DIRECT when the device takes it.
 */
export async function openDisk(path: string, policy: DiskPolicy): Promise<OpenDisk> {
  const { real, sizeBytes, logicalBlockBytes } = await describeDevice(path);
  await checkAllowed(policy, path, real);
  const flags = constants.O_WRONLY | constants.O_EXCL;
  let handle: FileHandle;
  let direct = true;
  try {
    handle = await open(real, flags | constants.O_DIRECT);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EBUSY') {
      throw new TaskFailure(Reason.DISK_IN_USE, `${path} is in use (mounted, or held by another program)`, {
        metadata: { disk: path },
        cause: err,
      });
    }
    if (code !== 'EINVAL') throw err;
    direct = false;
    handle = await open(real, flags);
  }
  // O_EXCL is held by the first handle; the second shares the same process.
  let buffered: FileHandle;
  try {
    buffered = await open(real, constants.O_WRONLY);
  } catch (err) {
    await handle.close();
    throw err;
  }
  return {
    path: real,
    sizeBytes,
    logicalBlockBytes,
    handle,
    direct,
    buffered,
    async close() {
      await Promise.allSettled([handle.close(), buffered.close()]);
    },
  };
}
