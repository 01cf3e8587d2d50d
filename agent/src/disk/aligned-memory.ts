/** WebAssembly's page; its memories start on an OS page boundary. */
const WASM_PAGE = 65536;

interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
const { Memory } = (
  globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number }) => WasmMemory } }
).WebAssembly;

/**
 * A zero-filled, page-aligned buffer of at least `bytes`, as O_DIRECT needs
 * (Node's own buffers are not aligned). A WebAssembly memory is the one
 * page-aligned allocation JavaScript offers; it is never grown, so the
 * buffer stays valid.
 */
export function alignedBuffer(bytes: number): Buffer {
  return Buffer.from(new Memory({ initial: Math.ceil(bytes / WASM_PAGE) }).buffer);
}

/** Page-aligned buffers handed back after a task, by size, for the next one. */
const free = new Map<number, Buffer[]>();

/** A page-aligned buffer on loan; give it back with `release()` when the task is done. */
export interface AlignedLoan {
  buffer: Buffer;
  release(): void;
}

/**
 * An aligned buffer of `bytes`, reused from an earlier task when one is free:
 * a WebAssembly memory is freed only by a full garbage collection, so
 * allocating one per deploy would let the agent's memory creep up task after
 * task. `zeroed` clears a reused buffer first.
 */
export function borrowAligned(bytes: number, opts: { zeroed?: boolean } = {}): AlignedLoan {
  const size = Math.ceil(bytes / WASM_PAGE) * WASM_PAGE;
  const reused = free.get(size)?.pop();
  if (reused && opts.zeroed) reused.fill(0);
  const buffer = reused ?? alignedBuffer(size);
  let returned = false;
  return {
    buffer,
    release() {
      if (returned) return;
      returned = true;
      const list = free.get(size) ?? [];
      list.push(buffer);
      free.set(size, list);
    },
  };
}
