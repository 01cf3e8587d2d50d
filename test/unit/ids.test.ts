import { describe, expect, it } from 'vitest';
import { isId } from '../../controller/src/domain/formats.ts';
import { newId } from '../../controller/src/store/ids.ts';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('newId', () => {
  it('is a lower-case UUIDv7 with the RFC 9562 variant', () => {
    for (let i = 0; i < 1000; i++) {
      const id = newId();
      expect(id).toMatch(UUID_V7);
      expect(isId(id)).toBe(true);
    }
  });

  it('carries the millisecond timestamp in its first 48 bits', () => {
    const now = Date.UTC(2025, 0, 2, 3, 4, 5, 678);
    const id = newId(now);
    expect(Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBe(now);
  });

  it('sorts ids created at increasing times in creation order', () => {
    const start = Date.UTC(2025, 0, 1);
    const times = [0, 1, 2, 255, 256, 65_536, 86_400_000, 2 ** 40].map((dt) => start + dt);
    const ids = times.map((t) => newId(t));
    expect([...ids].sort()).toEqual(ids);
  });

  it('sorts by time before randomness', () => {
    for (let i = 0; i < 1000; i++) {
      expect(newId(1_700_000_000_001) > newId(1_700_000_000_000)).toBe(true);
    }
  });

  it('does not repeat over 10k ids created in the same millisecond', () => {
    const now = Date.now();
    const ids = new Set(Array.from({ length: 10_000 }, () => newId(now)));
    expect(ids.size).toBe(10_000);
  });
});
