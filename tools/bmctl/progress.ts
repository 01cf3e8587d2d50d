import { formatTime } from './output.ts';
import { formatBytes } from './services.ts';

/** A deploy's or wipe's progress as the agent reports it (TaskProgress, InstanceProgress). */
export interface DiskProgress {
  phase: string;
  bytesDone: number;
  bytesTotal: number;
  rateBytesPerSecond: number;
  message: string;
}

/** 6000 → `6s`, 130_000 → `2m10s`, 7_500_000 → `2h05m`. */
export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
}

/** `writing 512.0 MiB / 2.0 GiB (25%) 610.3 MiB/s ETA 3s`; empty for no progress. */
export function describeProgress(p: DiskProgress | undefined): string {
  if (!p) return '';
  const parts = [p.phase];
  if (p.bytesTotal > 0) {
    parts.push(
      `${formatBytes(p.bytesDone)} / ${formatBytes(p.bytesTotal)} (${Math.floor((100 * p.bytesDone) / p.bytesTotal)}%)`,
    );
  } else if (p.bytesDone > 0) {
    parts.push(formatBytes(p.bytesDone));
  }
  if (p.rateBytesPerSecond > 0) {
    parts.push(`${formatBytes(p.rateBytesPerSecond)}/s`);
    if (p.bytesTotal > p.bytesDone)
      parts.push(
        `ETA ${formatDuration(Math.ceil((p.bytesTotal - p.bytesDone) / p.rateBytesPerSecond) * 1000)}`,
      );
  }
  if (p.message) parts.push(`— ${p.message}`);
  return parts.join(' ');
}

/** `[#######.............]` for a fraction between 0 and 1 (clamped). */
export function renderBar(fraction: number, width: number): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

/** Where a live display goes. */
export interface LiveOutput {
  /** Receives whole lines on a non-terminal; cursor movements too on a terminal. */
  write: (text: string) => void;
  /** Redraw in place with ANSI escapes; otherwise append plain lines. */
  tty: boolean;
  /** Terminal width; longer lines are cut so that redrawing stays in place. @default unlimited */
  columns?: number | undefined;
  /** Milliseconds since the epoch. @default Date.now */
  now?: () => number;
}

const ESC = '\u001b[';
/** Lines appended for one key at most this often, unless its milestone changes. @default 1 s */
const LOG_INTERVAL_MS = 1000;

interface LiveLine {
  text: string;
  milestone: string;
  loggedText: string | undefined;
  loggedMilestone: string | undefined;
  loggedAt: number;
}

/**
 * A block of lines, one per key (e.g. one per instance), that change over
 * time. On a terminal the block is redrawn in place on every change; elsewhere
 * (logs, pipes) each change is appended as `HH:MM:SS text`, at most once a
 * second per key unless its milestone (e.g. state and step) changed, so logs
 * keep every step but not every progress report. Nothing else may write to
 * the same output while the block is live.
 */
export class LiveLines {
  readonly #out: LiveOutput;
  readonly #lines = new Map<string, LiveLine>();
  #drawn = 0;

  constructor(out: LiveOutput) {
    this.#out = out;
  }

  get tty(): boolean {
    return this.#out.tty;
  }

  /** Sets `key`'s line; keys keep the order they were first set in. */
  set(key: string, text: string, milestone: string): void {
    let line = this.#lines.get(key);
    if (line === undefined) {
      line = { text, milestone, loggedText: undefined, loggedMilestone: undefined, loggedAt: 0 };
      this.#lines.set(key, line);
    }
    line.text = text;
    line.milestone = milestone;
    if (this.#out.tty) {
      this.#redraw();
      return;
    }
    const now = (this.#out.now ?? Date.now)();
    const due =
      line.loggedMilestone !== milestone ||
      (text !== line.loggedText && now - line.loggedAt >= LOG_INTERVAL_MS);
    if (!due) return;
    line.loggedText = text;
    line.loggedMilestone = milestone;
    line.loggedAt = now;
    this.#out.write(`${formatTime(new Date(now)).slice(11, 19)} ${text}\n`);
  }

  #redraw(): void {
    const width = this.#out.columns;
    let frame = this.#drawn > 0 ? `${ESC}${this.#drawn}A` : '';
    for (const { text } of this.#lines.values()) {
      const cut = width !== undefined && width > 1 && text.length >= width ? text.slice(0, width - 1) : text;
      frame += `\r${ESC}2K${cut}\n`;
    }
    this.#drawn = this.#lines.size;
    this.#out.write(frame);
  }
}
