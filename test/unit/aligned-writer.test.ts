import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { AlignedWriter } from '../../agent/src/disk/aligned-writer.ts';
import { endRanges, zeroRanges } from '../../agent/src/disk/zero.ts';

// The agent's disk writer on a plain file (no O_DIRECT there; the loop-device suites cover that):
// whatever the chunking, the bytes land where they belong, and the head only on commit.

const dir = mkdtempSync(join(tmpdir(), 'ingot-writer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function writer(path: string, blockBytes = 16_384, inFlight = 2) {
  writeFileSync(path, Buffer.alloc(0));
  const handle = await open(path, 'r+');
  const buffered = await open(path, 'r+');
  const w = new AlignedWriter({ handle, buffered, direct: false, blockBytes, inFlight, headBytes: 8192 });
  return { w, close: async () => Promise.all([handle.close(), buffered.close()]) };
}

describe('AlignedWriter', () => {
  it('writes any chunking of the data in order, holding the head back until commit', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 70_000 }),
        fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 20 }),
        fc.boolean(),
        async (bytes, cuts, zeroCopy) => {
          const data = Buffer.from(bytes);
          const path = join(dir, 'prop.img');
          const { w, close } = await writer(path);
          let at = 0;
          let i = 0;
          while (at < data.length) {
            const n = Math.min(cuts[i++ % cuts.length] ?? 1, data.length - at);
            if (zeroCopy) {
              let placed = 0;
              while (placed < n) {
                let region = w.region();
                while (!region) {
                  await w.ready();
                  region = w.region();
                }
                const k = data.copy(region, 0, at + placed, at + n);
                w.advance(k);
                placed += k;
              }
            } else {
              await w.write(data.subarray(at, at + n));
            }
            at += n;
          }
          expect(w.bytesAccepted).toBe(data.length);
          await w.flush();
          const before = readFileSync(path);
          // Nothing of the head is on the file before commit.
          expect(before.subarray(0, Math.min(8192, before.length)).every((b) => b === 0)).toBe(true);
          await w.commit();
          expect(readFileSync(path).equals(data)).toBe(true);
          expect(w.bytesWritten).toBe(data.length);
          await close();
        },
      ),
      { numRuns: 40 },
    );
  });

  it('refuses block sizes that are not whole pages', async () => {
    const handle = await open(join(dir, 'x'), 'w');
    expect(() => new AlignedWriter({ handle, buffered: handle, direct: false, blockBytes: 1000 })).toThrow(
      /4096/,
    );
    await handle.close();
  });
});

describe('wiping the ends of a disk', () => {
  it('covers the start, the end and the end of the image span, clipped to the disk', async () => {
    const MiB = 1 << 20;
    expect(endRanges(64 * MiB)).toEqual([
      { start: 0, end: 4 * MiB },
      { start: 60 * MiB, end: 64 * MiB },
    ]);
    expect(endRanges(64 * MiB, 20 * MiB)).toContainEqual({ start: 16 * MiB, end: 20 * MiB });
    expect(endRanges(64 * MiB, 2 * MiB)).toHaveLength(2);

    const path = join(dir, 'wipe.img');
    writeFileSync(path, Buffer.alloc(10 * MiB, 0xee));
    const handle = await open(path, 'r+');
    const disk = {
      path,
      sizeBytes: 10 * MiB,
      logicalBlockBytes: 512,
      handle,
      buffered: handle,
      direct: false,
      close: async () => {},
    };
    const written = await zeroRanges(disk, [
      { start: 100, end: 5000 },
      { start: 9 * MiB, end: 12 * MiB },
    ]);
    await handle.close();
    const after = readFileSync(path);
    expect(written).toBe(4900 + MiB);
    expect(after.subarray(100, 5000).every((b) => b === 0)).toBe(true);
    expect(after[99]).toBe(0xee);
    expect(after[5000]).toBe(0xee);
    expect(after.subarray(9 * MiB).every((b) => b === 0)).toBe(true);
    expect(after.length).toBe(10 * MiB);
  });
});
