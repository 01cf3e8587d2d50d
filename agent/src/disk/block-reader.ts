import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { checkAllowed, type DiskPolicy, describeDevice } from './block-device.ts';

/**
 * Test hook, only because the test machines' kernel has no device-mapper
 * `error` target: `OFFSET:LENGTH[,OFFSET:LENGTH…]` (bytes) makes every read
 * overlapping one of these ranges fail with EIO, as a bad sector does.
 * Unset in production.
 */
export const UNREADABLE_FOR_TESTS_ENV = 'INGOT_AGENT_UNREADABLE_FOR_TESTS';

/** Read errors that mean "this part of the disk is unreadable", not a bug. */
const MEDIUM_ERRORS = new Set(['EIO', 'ENODATA', 'EILSEQ', 'EBADMSG', 'EREMOTEIO']);

/** True when `err` is a failed read of the medium (a capture zero-fills it), not a programming error. */
export function isMediumError(err: unknown): boolean {
  return MEDIUM_ERRORS.has((err as NodeJS.ErrnoException)?.code ?? '');
}

/** A block device opened read-only: a capture can never write to it. */
export interface ReadOnlyDisk {
  path: string;
  sizeBytes: number;
  logicalBlockBytes: number;
  /** Fills `buffer[0, length)` from `position`; rejects on a read error or when the disk ends first. */
  readFully(buffer: Buffer, length: number, position: number): Promise<void>;
  close(): Promise<void>;
}

function parseFaults(text: string | undefined): { start: number; end: number }[] {
  if (!text) return [];
  return text.split(',').map((part) => {
    const [offset, length] = part.split(':').map(Number);
    return { start: offset ?? 0, end: (offset ?? 0) + (length ?? 0) };
  });
}

/**
 * Opens a disk the policy allows (the same disks tasks may write) with
 * O_RDONLY and without O_EXCL: reading a mounted disk is allowed, though its
 * file systems may then be caught mid-change.
 */
export async function openDiskReadOnly(path: string, policy: DiskPolicy): Promise<ReadOnlyDisk> {
  const { real, sizeBytes, logicalBlockBytes } = await describeDevice(path);
  await checkAllowed(policy, path, real);
  const handle: FileHandle = await open(real, constants.O_RDONLY);
  const faults = parseFaults(process.env[UNREADABLE_FOR_TESTS_ENV]);
  return {
    path: real,
    sizeBytes,
    logicalBlockBytes,
    async readFully(buffer, length, position) {
      if (faults.some((f) => position < f.end && f.start < position + length)) {
        throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO', errno: -5, syscall: 'read' });
      }
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
        if (bytesRead === 0)
          throw new Error(`${real} ended at byte ${position + done}, before ${position + length}`);
        done += bytesRead;
      }
    },
    close: () => handle.close(),
  };
}
