import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ProgressReporter } from '../../agent/src/tasks/progress.ts';
import type { TaskProgress } from '../../build/gen/ingot/v1/task.ts';

// The agent's progress throttle, on fake timers: at most four reports a second, phase changes and
// messages at once, the latest count never lost.

describe('ProgressReporter', () => {
  let sent: TaskProgress[];
  let reporter: ProgressReporter;

  beforeEach(() => {
    vi.useFakeTimers({ now: new Date('2026-01-01T00:00:00Z') });
    sent = [];
    reporter = new ProgressReporter('t1', (p) => sent.push(p));
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it('reports a new phase at once and then at most every 250 ms, ending on the latest count', () => {
    reporter.update('writing', 0, 1000);
    expect(sent.map((p) => [p.phase, p.bytesDone])).toEqual([['writing', 0]]);
    for (let i = 1; i <= 100; i++) {
      vi.advanceTimersByTime(10);
      reporter.update('writing', i * 10, 1000);
    }
    // 1 s of updates every 10 ms: the first, then one per 250 ms.
    expect(sent.length).toBe(5);
    vi.advanceTimersByTime(250);
    expect(sent.at(-1)?.bytesDone).toBe(1000);
    expect(sent.every((p) => p.taskId === 't1' && p.bytesTotal === 1000)).toBe(true);
  });

  it('measures the rate over the last seconds', () => {
    reporter.update('writing', 0, 10_000);
    for (let i = 1; i <= 30; i++) {
      vi.advanceTimersByTime(100);
      reporter.update('writing', i * 100, 10_000);
    }
    vi.advanceTimersByTime(250);
    // 100 bytes every 100 ms.
    expect(sent.at(-1)?.rateBytesPerSecond).toBe(1000);
  });

  it('sends messages and phase changes without waiting, and the latest count on close', () => {
    reporter.update('writing', 10, 100);
    reporter.update('writing', 20, 100);
    reporter.update('resuming', 20, 100, 'connection lost');
    reporter.update('writing', 30, 100);
    reporter.update('writing', 40, 100);
    expect(sent.map((p) => p.phase)).toEqual(['writing', 'resuming', 'writing']);
    reporter.close();
    expect(sent.at(-1)?.bytesDone).toBe(40);
    expect(reporter.latest?.bytesDone).toBe(40);
  });
});
