/**
 * Agent tasks: what they are, the states they go through and the stored
 * shapes of their parts. Pure: no I/O.
 */

export const TASK_KINDS = ['deploy', 'wipe', 'inspect', 'reboot', 'poweroff', 'capture'] as const;
export type TaskKind = (typeof TASK_KINDS)[number];

export const TASK_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type TaskState = (typeof TASK_STATES)[number];

/** Which state may follow which; every change is a conditional update on the `from` state. */
const TRANSITIONS: Record<TaskState, readonly TaskState[]> = {
  // Sent to an agent, or cancelled before it was.
  queued: ['running', 'cancelled'],
  // running → running is a re-send after the agent reconnected (attempt + 1).
  running: ['running', 'succeeded', 'failed', 'cancelled'],
  succeeded: [],
  failed: [],
  cancelled: [],
};

export function canTransition(from: TaskState, to: TaskState): boolean {
  return TRANSITIONS[from].includes(to);
}

export function isFinished(state: TaskState): boolean {
  return TRANSITIONS[state].length === 0;
}

/** States from which `to` can be reached, for the WHERE clause of a conditional update. */
export function statesBefore(to: TaskState): TaskState[] {
  return TASK_STATES.filter((from) => canTransition(from, to));
}

/** A task's parameters as stored; a deploy's image is stored by id. */
export interface TaskSpecBody {
  /** `sha256` is the image's digest when the task was created, checked against the agent's. */
  deploy?: { image: string; disk: string; sha256?: string };
  wipe?: { disk: string; full: boolean };
  inspect?: Record<string, never>;
  reboot?: Record<string, never>;
  poweroff?: Record<string, never>;
  capture?: CaptureSpecBody;
}

/** A capture's parameters as stored, defaults filled in (see CaptureSpec in task.proto). */
export interface CaptureSpecBody {
  disk: string;
  blockSizeBytes: number;
  count: number;
  skip: number;
  toLastPartition: boolean;
  strict: boolean;
  /** `HOST:PORT` the agent streams to; with `image`, the controller's capture port. */
  receiver: string;
  /** The image the bytes go to (its id once the task exists); empty when they go to `receiver` only. */
  image: string;
  /** With `image` only: the agent sends the disk zstd-compressed. */
  compress: boolean;
}

/** A capture's read size when none is given. @default 8 MiB */
export const CAPTURE_BLOCK_BYTES_DEFAULT = 8 << 20;
/** Capture read sizes allowed: multiples of 512 from 512 B to 64 MiB. */
export const CAPTURE_BLOCK_BYTES_MIN = 512;
export const CAPTURE_BLOCK_BYTES_MAX = 64 << 20;

/**
 * `HOST:PORT` of a capture receiver: a host name or IPv4 address, or an
 * IPv6 address in brackets, and a port from 1 to 65535. Undefined when
 * malformed.
 */
export function parseHostPort(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)):([0-9]{1,5})$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: (m[1] ?? m[2]) as string, port };
}

export interface TaskProgressBody {
  phase: string;
  bytesDone: number;
  bytesTotal: number;
  rateBytesPerSecond: number;
  /** When the agent measured it, ISO 8601. */
  time: string;
  message: string;
}

export interface TaskErrorBody {
  reason: string;
  message: string;
  metadata: Record<string, string>;
}

export interface DiskBody {
  path: string;
  sizeBytes: number;
  model: string;
  serial: string;
  rotational: boolean;
  logicalBlockBytes: number;
}

export interface NicBody {
  name: string;
  mac: string;
  linkUp: boolean;
  speedMbps: number;
}

export interface HardwareBody {
  cpuCount: number;
  cpuModel: string;
  ramBytes: number;
  disks: DiskBody[];
  nics: NicBody[];
}

/** A disk range a capture could not read (and sent as zeros). */
export interface UnreadableRangeBody {
  offsetBytes: number;
  lengthBytes: number;
  error: string;
}

/** What a capture found in the partition table (PartitionTableReport in task.proto). */
export interface PartitionTableBody {
  scheme: string;
  mbrSignature: boolean;
  gptPrimary: boolean;
  gptBackup: boolean;
  partitionCount: number;
  lastPartitionEndBytes: number;
  hasBootPartition: boolean;
  warnings: string[];
}

export interface TaskOutcomeBody {
  sha256: string;
  bytesWritten: number;
  inventory?: HardwareBody;
  /** Capture only: bytes on the wire, and bytes read from the disk (more when compressed). */
  bytesSent?: number;
  bytesRead?: number;
  unreadable?: UnreadableRangeBody[];
  partitionTable?: PartitionTableBody;
}

/** Task error reasons the controller itself gives (agents add their own, e.g. IMAGE_TOO_LARGE). */
export const TaskErrorReason = {
  /** The agent reported a digest other than the image's. */
  DIGEST_MISMATCH: 'DIGEST_MISMATCH',
  CANCELLED: 'CANCELLED',
  /** The image was deleted or is no longer ACTIVE when the task was to be sent. */
  IMAGE_UNAVAILABLE: 'IMAGE_UNAVAILABLE',
} as const;

/** Disk paths the agent accepts: a block device under /dev, no `..`. */
export function isDiskPath(path: string): boolean {
  return /^\/dev\/[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(path) && !path.split('/').includes('..');
}
