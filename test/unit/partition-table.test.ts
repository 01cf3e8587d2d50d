import { describe, expect, it } from 'vitest';
import { checkPartitionTable, type ReadAt } from '../../agent/src/disk/partition-table.ts';
import { parseHostPort } from '../../controller/src/domain/tasks.ts';
import { parseListen } from '../../tools/bmctl/receiver.ts';

// The partition-table check on hand-made first sectors: what a capture warns about. The real
// tables sfdisk and sgdisk write are read in test/integration/agent-capture.test.ts.

const MiB = 1 << 20;
const GiB = 1 << 30;

/** A disk of `sizeBytes` whose first sector is `sector`; everything else reads as zeros. */
function diskWith(sector: Buffer): ReadAt {
  return async (offset, length) => {
    const out = Buffer.alloc(length);
    if (offset < 512) sector.copy(out, 0, offset, Math.min(512, offset + length));
    return out;
  };
}

/** An MBR with the given primary entries (sectors of 512 bytes). */
function mbr(entries: { type: number; active?: boolean; start: number; sectors: number }[]): Buffer {
  const b = Buffer.alloc(512);
  entries.forEach((e, i) => {
    const at = 446 + 16 * i;
    b[at] = e.active ? 0x80 : 0;
    b[at + 4] = e.type;
    b.writeUInt32LE(e.start, at + 8);
    b.writeUInt32LE(e.sectors, at + 12);
  });
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

describe('checkPartitionTable', () => {
  it('finds a bootable MBR partition and the end of the last one', async () => {
    const size = 64 * MiB;
    const report = await checkPartitionTable(
      diskWith(
        mbr([
          { type: 0x83, active: true, start: 2048, sectors: 8192 },
          { type: 0x83, start: 10240, sectors: 2048 },
        ]),
      ),
      size,
      512,
    );
    expect(report).toMatchObject({
      scheme: 'mbr',
      partitionCount: 2,
      lastPartitionEndBytes: 12288 * 512,
      hasBootPartition: true,
      warnings: [],
    });
  });

  it('warns when the disk looks like the second half of a split install', async () => {
    // A data partition starting 2 GiB in, with no boot partition: the system's start is elsewhere.
    const report = await checkPartitionTable(
      diskWith(mbr([{ type: 0x07, start: (2 * GiB) / 512, sectors: (8 * GiB) / 512 }])),
      4 * GiB,
      512,
    );
    expect(report.hasBootPartition).toBe(false);
    expect(report.warnings).toEqual([
      expect.stringContaining('past the end of the disk'),
      expect.stringMatching(/no bootable.*starts 2147483648 bytes in.*split install/),
    ]);
  });

  it('warns, without failing, about a blank disk and a protective MBR without a GPT', async () => {
    const blank = await checkPartitionTable(diskWith(Buffer.alloc(512)), 8 * MiB, 512);
    expect(blank).toMatchObject({ scheme: 'none', partitionCount: 0 });
    expect(blank.warnings[0]).toContain('no partition table');
    const damaged = await checkPartitionTable(
      diskWith(mbr([{ type: 0xee, start: 1, sectors: 16383 }])),
      8 * MiB,
      512,
    );
    expect(damaged).toMatchObject({ scheme: 'gpt', gptPrimary: false, partitionCount: 0 });
    expect(damaged.warnings[0]).toContain('no GPT header');
  });

  it('turns an unreadable first sector into a warning', async () => {
    const report = await checkPartitionTable(
      async () => {
        throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
      },
      8 * MiB,
      512,
    );
    expect(report.warnings[0]).toContain('cannot be read');
  });
});

describe('receiver addresses', () => {
  it('parses HOST:PORT for capture specs', () => {
    expect(parseHostPort('10.0.0.1:9000')).toEqual({ host: '10.0.0.1', port: 9000 });
    expect(parseHostPort('[fd00::1]:9000')).toEqual({ host: 'fd00::1', port: 9000 });
    expect(parseHostPort('ws-1.lab:1')).toEqual({ host: 'ws-1.lab', port: 1 });
    for (const bad of ['10.0.0.1', ':9000', '10.0.0.1:0', 'h:65536', 'fd00::1:9000', 'a b:1']) {
      expect(parseHostPort(bad), bad).toBeUndefined();
    }
  });

  it('parses [HOST:]PORT for bmctl image receive --listen', () => {
    expect(parseListen('9000')).toEqual({ host: undefined, port: 9000 });
    expect(parseListen('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseListen('[::1]:9000')).toEqual({ host: '::1', port: 9000 });
    expect(parseListen('x:99999')).toBeUndefined();
  });
});
