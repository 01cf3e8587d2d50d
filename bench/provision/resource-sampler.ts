/**
 * What a provisioning wave costs the machine, sampled from /proc while it runs: the machine's memory
 * in use and CPU busy time, and the private (anonymous) memory of the lab's processes by kind — the
 * controller, the agents, the virtual nodes' Node.js processes, the BMC simulators. Private memory
 * rather than RSS: the agent is a 120 MiB executable whose pages every agent shares.
 *
 * Other work on the machine shows in the machine-wide figures, not in the per-kind ones: a process
 * counts only when its command line names this lab (its directory or its controller's address).
 */
import { readdirSync, readFileSync } from 'node:fs';

const PAGE_BYTES = 4096;
/** Clock ticks per second of /proc's CPU times (USER_HZ, 100 on every Linux this runs on). */
const TICKS_PER_S = 100;

export type ProcessKind = 'controller' | 'agents' | 'virtual nodes' | 'BMC simulators';
const KINDS: ProcessKind[] = ['controller', 'agents', 'virtual nodes', 'BMC simulators'];

export interface LabProcesses {
  controllerPid: number;
  /** The lab's directory: every virtual node's command line names its config file inside. */
  labDir: string;
  /** The controller's address on the lab's service network, in every agent's `--controller`. */
  controllerHost: string;
  bmcPids: number[];
}

export interface ResourceReport {
  seconds: number;
  /** MemTotal − MemAvailable at its highest, and before the wave started. */
  machineUsedPeakBytes: number;
  machineUsedBeforeBytes: number;
  /** Share of all cores busy over the wave (1 = every core all the time). */
  machineBusy: number;
  cores: number;
  /** The controller's own CPU time, and that of its children it has reaped (ipmitool, …). */
  controllerCpuS: number;
  controllerChildrenCpuS: number;
  /** Per kind: the highest sum of private memory seen at one sample, and how many processes then. */
  peakByKind: Record<ProcessKind, { bytes: number; processes: number }>;
  /** The largest one agent's private memory ever got. */
  agentPeakBytes: number;
  samples: number;
}

/** Samples every `intervalMs` from `start()` until `stop()`, which returns the report. */
export class ResourceSampler {
  readonly #lab: LabProcesses;
  readonly #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  #startedAt = 0;
  #cpuAtStart = { busy: 0, total: 0 };
  #controllerAtStart = { self: 0, children: 0 };
  #usedBefore = 0;
  #usedPeak = 0;
  #agentPeak = 0;
  #samples = 0;
  readonly #peak = Object.fromEntries(KINDS.map((k) => [k, { bytes: 0, processes: 0 }])) as Record<
    ProcessKind,
    { bytes: number; processes: number }
  >;
  /** `pid comm` → kind (or null: not the lab's), since a command line is read once per program. */
  readonly #kinds = new Map<string, ProcessKind | null>();

  constructor(lab: LabProcesses, intervalMs = 500) {
    this.#lab = lab;
    this.#intervalMs = intervalMs;
  }

  start(): void {
    this.#startedAt = performance.now();
    this.#cpuAtStart = machineCpu();
    this.#controllerAtStart = processCpu(this.#lab.controllerPid);
    this.#usedBefore = machineUsedBytes();
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), this.#intervalMs);
  }

  stop(): ResourceReport {
    clearInterval(this.#timer);
    this.#sample();
    const cpu = machineCpu();
    const controller = processCpu(this.#lab.controllerPid);
    const cores = countCores();
    return {
      seconds: (performance.now() - this.#startedAt) / 1000,
      machineUsedPeakBytes: this.#usedPeak,
      machineUsedBeforeBytes: this.#usedBefore,
      machineBusy: (cpu.busy - this.#cpuAtStart.busy) / Math.max(1, cpu.total - this.#cpuAtStart.total),
      cores,
      controllerCpuS: (controller.self - this.#controllerAtStart.self) / TICKS_PER_S,
      controllerChildrenCpuS: (controller.children - this.#controllerAtStart.children) / TICKS_PER_S,
      peakByKind: structuredClone(this.#peak),
      agentPeakBytes: this.#agentPeak,
      samples: this.#samples,
    };
  }

  #sample(): void {
    this.#samples++;
    this.#usedPeak = Math.max(this.#usedPeak, machineUsedBytes());
    const now = Object.fromEntries(KINDS.map((k) => [k, { bytes: 0, processes: 0 }])) as Record<
      ProcessKind,
      { bytes: number; processes: number }
    >;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const pid = Number(entry);
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        const kind = this.#kindOf(pid, comm);
        if (!kind) continue;
        const bytes = privateBytes(pid);
        now[kind].bytes += bytes;
        now[kind].processes++;
        if (kind === 'agents') this.#agentPeak = Math.max(this.#agentPeak, bytes);
      } catch {
        // Gone between the listing and the read.
      }
    }
    for (const kind of KINDS) {
      if (now[kind].bytes > this.#peak[kind].bytes) this.#peak[kind] = now[kind];
    }
  }

  #kindOf(pid: number, comm: string): ProcessKind | null {
    const key = `${pid} ${comm}`;
    const known = this.#kinds.get(key);
    if (known !== undefined) return known;
    let kind: ProcessKind | null = null;
    if (pid === this.#lab.controllerPid) kind = 'controller';
    else if (this.#lab.bmcPids.includes(pid)) kind = 'BMC simulators';
    else {
      // Node.js names its main thread, so `comm` is `MainThread` for both: go by the command line.
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv[0]?.endsWith('ingot-agent') && argv.some((a) => a.startsWith(`${this.#lab.controllerHost}:`)))
        kind = 'agents';
      else if (
        argv.some((a) => a.endsWith('virtual-node.ts')) &&
        argv.some((a) => a.startsWith(this.#lab.labDir))
      )
        kind = 'virtual nodes';
    }
    this.#kinds.set(key, kind);
    return kind;
  }
}

/** Resident memory not backed by a file (statm: resident − shared), in bytes. */
function privateBytes(pid: number): number {
  const [, resident = 0, shared = 0] = readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ').map(Number);
  return (resident - shared) * PAGE_BYTES;
}

function machineUsedBytes(): number {
  const info = readFileSync('/proc/meminfo', 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  return (kb('MemTotal') - kb('MemAvailable')) * 1024;
}

/** Jiffies since boot over all cores: busy (not idle or iowait) and total. */
function machineCpu(): { busy: number; total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '')
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const total = fields.reduce((sum, v) => sum + v, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

function countCores(): number {
  return readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .filter((l) => /^cpu\d+ /.test(l)).length;
}

/** A process's CPU ticks: its own (utime + stime) and its reaped children's (cutime + cstime). */
function processCpu(pid: number): { self: number; children: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number);
    // After the comm: state is f[0], so utime (field 14) is f[11].
    return { self: (f[11] ?? 0) + (f[12] ?? 0), children: (f[13] ?? 0) + (f[14] ?? 0) };
  } catch {
    return { self: 0, children: 0 };
  }
}
