import { randomBytes } from 'node:crypto';
import { zstdCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ZstdDecoder } from '../../agent/src/tasks/zstd-decoder.ts';

// The agent's synchronous zstd decoder relies on internals of the Node.js it embeds: these tests pin
// them down (a Node.js upgrade that changes them fails here, not on a node).

describe('ZstdDecoder', () => {
  it('decodes into the caller’s buffers, however small, in input pieces of any size', () => {
    const original = Buffer.concat([randomBytes(300_000), Buffer.alloc(500_000, 3), randomBytes(1234)]);
    const compressed = zstdCompressSync(original);
    const decoder = new ZstdDecoder();
    const out = Buffer.alloc(original.length);
    let written = 0;
    for (let at = 0; at < compressed.length; at += 7000) {
      const piece = compressed.subarray(at, at + 7000);
      let used = 0;
      for (;;) {
        const region = out.subarray(written, Math.min(out.length, written + 65_536));
        const { consumed, produced } = decoder.decode(piece.subarray(used), region);
        used += consumed;
        written += produced;
        if (used >= piece.length && produced < region.length) break;
        if (consumed === 0 && produced === 0) break;
      }
    }
    decoder.close();
    expect(written).toBe(original.length);
    expect(out.equals(original)).toBe(true);
  });

  it('throws on data that is not zstd, instead of reporting stale counts', () => {
    const decoder = new ZstdDecoder();
    expect(() => decoder.decode(randomBytes(1000), Buffer.alloc(4096))).toThrow(
      expect.objectContaining({ code: expect.stringMatching(/^ZSTD_error_/) }),
    );
  });
});
