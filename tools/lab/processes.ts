import { readFileSync } from 'node:fs';

/**
 * True while the process runs. A process reparented to PID 1 lingers as a zombie for a moment,
 * when `kill -0` still says "alive": the state letter in /proc decides.
 */
export function isLive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Signals a process the lab started, by PID; one that is gone already is no error. */
export function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Gone already.
  }
}
