import type {
  HardwareInventory,
  PartitionTableReport,
  UnreadableRange,
} from '../../../build/gen/ingot/v1/task.ts';
import type { DiskPolicy } from '../disk/block-device.ts';
import type { Logger } from '../log.ts';
import type { ProgressReporter } from './progress.ts';

/** What every task gets. */
export interface TaskContext {
  taskId: string;
  /** Aborted when the controller cancels the task or the agent stops. */
  signal: AbortSignal;
  log: Logger;
  progress: ProgressReporter;
  disks: DiskPolicy;
}

/** What a task that succeeded reports. */
export interface TaskOutcomeValue {
  sha256?: string;
  bytesWritten?: number;
  inventory?: HardwareInventory;
  /**
   * Capture: bytes sent to the receiver and read from the disk (fewer sent when compressed), the ranges
   * sent as zeros, the partition table check.
   */
  bytesSent?: number;
  bytesRead?: number;
  unreadable?: UnreadableRange[];
  partitionTable?: PartitionTableReport;
  /** Runs once the controller has recorded the outcome (reboot and power off happen then). */
  afterAck?: () => Promise<void>;
}
