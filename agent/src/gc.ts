import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Gc = (options?: { type?: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as Gc;

/**
 * Frees the young generation now. Decompression allocates a fresh output
 * buffer per megabyte, and V8 only collects those when its external-memory
 * heuristics say so; collecting every few dozen megabytes keeps the agent's
 * memory flat however large the image (a scavenge takes about a millisecond).
 */
export function collectYoungGarbage(): void {
  gc({ type: 'minor' });
}
