import { describe, expect, it } from 'vitest';
import {
  canTransition,
  isDiskPath,
  isFinished,
  statesBefore,
  TASK_STATES,
} from '../../controller/src/domain/tasks.ts';
import { formatOfFile, ProgressBar } from '../../tools/bmctl/commands/image.ts';
import { describeProgress, taskSpec } from '../../tools/bmctl/commands/task.ts';
import { UsageError } from '../../tools/bmctl/errors.ts';
import { formatBytes, parseDuration } from '../../tools/bmctl/services.ts';

describe('task states', () => {
  it('move forward only, and finished ones never move', () => {
    expect(canTransition('queued', 'running')).toBe(true);
    expect(canTransition('queued', 'cancelled')).toBe(true);
    expect(canTransition('queued', 'succeeded')).toBe(false);
    expect(canTransition('running', 'running')).toBe(true);
    expect(canTransition('running', 'queued')).toBe(false);
    for (const done of ['succeeded', 'failed', 'cancelled'] as const) {
      expect(isFinished(done)).toBe(true);
      for (const to of TASK_STATES) expect(canTransition(done, to)).toBe(false);
    }
    expect(statesBefore('cancelled')).toEqual(['queued', 'running']);
    expect(statesBefore('succeeded')).toEqual(['running']);
  });

  it('accept block device paths only', () => {
    for (const good of ['/dev/sda', '/dev/nvme0n1', '/dev/disk/by-id/wwn-0x5000', '/dev/loop7']) {
      expect(isDiskPath(good), good).toBe(true);
    }
    for (const bad of [
      'sda',
      '/dev/',
      '/dev/../etc/passwd',
      '/dev/sda/../../etc',
      '/tmp/x',
      '/dev/sd a',
      '',
    ]) {
      expect(isDiskPath(bad), bad).toBe(false);
    }
  });
});

describe('bmctl task and image helpers', () => {
  it('builds each kind’s spec and refuses flags that do not belong', () => {
    expect(taskSpec('deploy', { node: 'n', image: 'i', disk: '/dev/sda' })).toEqual({
      deploy: { image: 'i', disk: '/dev/sda' },
    });
    expect(taskSpec('wipe', { node: 'n', disk: '/dev/sda', full: true })).toEqual({
      wipe: { disk: '/dev/sda', full: true },
    });
    expect(taskSpec('inspect', { node: 'n' })).toEqual({ inspect: {} });
    expect(() => taskSpec('deploy', { node: 'n', disk: '/dev/sda' })).toThrow(UsageError);
    expect(() => taskSpec('wipe', { node: 'n' })).toThrow(/needs --disk/);
    expect(() => taskSpec('reboot', { node: 'n', disk: '/dev/sda' })).toThrow(/does not go with reboot/);
    expect(() => taskSpec('wipe', { node: 'n', disk: '/dev/sda', image: 'x' })).toThrow(/--image/);
  });

  it('describes progress for people', () => {
    const base = { taskId: 't', time: new Date(), message: '' };
    expect(
      describeProgress({
        ...base,
        phase: 'writing',
        bytesDone: 2 ** 30,
        bytesTotal: 4 * 2 ** 30,
        rateBytesPerSecond: 512 << 20,
      }),
    ).toBe('writing 1.0 GiB / 4.0 GiB (25%) 512.0 MiB/s ETA 6s');
    expect(
      describeProgress({ ...base, phase: 'inspecting', bytesDone: 0, bytesTotal: 0, rateBytesPerSecond: 0 }),
    ).toBe('inspecting');
    expect(describeProgress(undefined)).toBe('');
  });

  it('parses durations and sizes, and guesses formats from file names', () => {
    expect(parseDuration('90s')).toEqual({ seconds: 90, nanos: 0 });
    expect(parseDuration('10m')).toEqual({ seconds: 600, nanos: 0 });
    expect(parseDuration('2h')).toEqual({ seconds: 7200, nanos: 0 });
    expect(parseDuration('7d')).toEqual({ seconds: 604800, nanos: 0 });
    expect(parseDuration('soon')).toBeUndefined();
    expect(parseDuration('1.5h')).toBeUndefined();
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatOfFile('/img/ubuntu.raw.zst')).toBe('zstd');
    expect(formatOfFile('win.img.GZ')).toBe('gzip');
    expect(formatOfFile('disk.img')).toBe('raw');
  });
});

describe('the upload progress bar', () => {
  it('draws on a terminal and stays silent elsewhere', () => {
    let drawn = '';
    const bar = new ProgressBar({ write: (t) => (drawn += t), tty: true }, 4 * 2 ** 20);
    bar.update(2 ** 20, true);
    bar.finish();
    expect(drawn).toMatch(/^\r\[#{8}\.{22}\] {2}25% {2}1\.0 MiB \/ 4\.0 MiB .*\/s \n$/);

    let quiet = '';
    const none = new ProgressBar({ write: (t) => (quiet += t), tty: false }, 100);
    none.update(50, true);
    none.finish();
    expect(quiet).toBe('');
  });
});
