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
