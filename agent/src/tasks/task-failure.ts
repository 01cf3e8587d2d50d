/**
 * A task's typed failure, reported to the controller as TaskError: a stable
 * reason and a message that says what to do next.
 */
export class TaskFailure extends Error {
  readonly reason: string;
  readonly metadata: Record<string, string>;

  constructor(
    reason: string,
    message: string,
    opts: { metadata?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = 'TaskFailure';
    this.reason = reason;
    this.metadata = opts.metadata ?? {};
  }
}

/** Reasons the agent reports. */
export const Reason = {
  /** The bytes received hash to something else than the image's SHA-256. */
  DIGEST_MISMATCH: 'DIGEST_MISMATCH',
  /** The decompressed image is larger or smaller than announced. */
  SIZE_MISMATCH: 'SIZE_MISMATCH',
  IMAGE_TOO_LARGE: 'IMAGE_TOO_LARGE',
  DISK_NOT_ALLOWED: 'DISK_NOT_ALLOWED',
  DISK_NOT_FOUND: 'DISK_NOT_FOUND',
  DISK_IN_USE: 'DISK_IN_USE',
  DISK_WRITE_FAILED: 'DISK_WRITE_FAILED',
  /** A capture met an unreadable block and was told to be strict. */
  DISK_READ_FAILED: 'DISK_READ_FAILED',
  /** A capture with `to_last_partition` found no partitions to stop after. */
  NO_PARTITION_TABLE: 'NO_PARTITION_TABLE',
  /** A capture's skip/count select no bytes of the disk. */
  NOTHING_TO_CAPTURE: 'NOTHING_TO_CAPTURE',
  /** Nobody accepted the capture's connection. */
  RECEIVER_UNREACHABLE: 'RECEIVER_UNREACHABLE',
  /** The capture's connection broke before the last byte. */
  RECEIVER_FAILED: 'RECEIVER_FAILED',
  DOWNLOAD_FAILED: 'DOWNLOAD_FAILED',
  IMAGE_DATA_INVALID: 'IMAGE_DATA_INVALID',
  CANCELLED: 'CANCELLED',
  POWER_COMMAND_UNSET: 'POWER_COMMAND_UNSET',
  POWER_COMMAND_FAILED: 'POWER_COMMAND_FAILED',
  UNSUPPORTED_TASK: 'UNSUPPORTED_TASK',
  AGENT_ERROR: 'AGENT_ERROR',
} as const;
