import type { FSWatcher } from 'node:fs';
import { closeSync, existsSync, openSync, readSync, renameSync, statSync, unlinkSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';

/** What dnsmasq's dhcp-script reported. */
export type DhcpEvent =
  | { kind: 'lease'; action: 'add' | 'old' | 'del'; mac: string; ip: string }
  | { kind: 'tftp'; bytes: number; ip: string; file: string };

/** Parses one line the event script appended (`add MAC IP NAME`, `tftp BYTES IP FILE`). */
export function parseEventLine(line: string): DhcpEvent | undefined {
  const [action = '', a = '', b = '', c = ''] = line.trim().split(/\s+/);
  if (action === 'add' || action === 'old' || action === 'del') {
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(a)) return undefined;
    return { kind: 'lease', action, mac: a.toLowerCase(), ip: b };
  }
  if (action === 'tftp') return { kind: 'tftp', bytes: Number(a), ip: b, file: c };
  return undefined;
}

/** Rotate the event log beyond this size. @default 1 MiB */
const ROTATE_BYTES = 1024 * 1024;

/**
 * Follows the event log the dhcp-script appends to, from where it was
 * (events before the controller started are not replayed: the database has
 * the states they led to). Watches the directory with inotify, with a slow
 * poll as a safety net, and rotates the log once it is large: the script
 * opens the file for every line, so a renamed log is finished after one read.
 */
export class DhcpEventTail {
  readonly #path: string;
  readonly #onEvent: (e: DhcpEvent) => void;
  #offset = 0;
  #partial = '';
  #watcher: FSWatcher | undefined;
  #poll: NodeJS.Timeout | undefined;

  constructor(path: string, onEvent: (e: DhcpEvent) => void) {
    this.#path = path;
    this.#onEvent = onEvent;
  }

  start(): void {
    this.#offset = existsSync(this.#path) ? statSync(this.#path).size : 0;
    this.#watcher = watch(dirname(this.#path), (_event, file) => {
      if (file === basename(this.#path)) this.read();
    });
    this.#poll = setInterval(() => this.read(), 1_000);
    this.#poll.unref();
  }

  stop(): void {
    this.#watcher?.close();
    clearInterval(this.#poll);
  }

  /** Reads what was appended since the last read and hands over each complete line. */
  read(): void {
    if (!existsSync(this.#path)) return;
    const size = statSync(this.#path).size;
    if (size < this.#offset) this.#offset = 0; // replaced by someone: start over
    if (size > this.#offset) this.#readFrom(this.#path);
    if (this.#offset > ROTATE_BYTES) {
      const old = `${this.#path}.old`;
      renameSync(this.#path, old);
      this.#readFrom(old); // lines appended between the last read and the rename
      unlinkSync(old);
      this.#offset = 0;
    }
  }

  #readFrom(path: string): void {
    const fd = openSync(path, 'r');
    try {
      const buffer = Buffer.alloc(64 * 1024);
      for (;;) {
        const n = readSync(fd, buffer, 0, buffer.length, this.#offset);
        if (n === 0) break;
        this.#offset += n;
        const text = this.#partial + buffer.subarray(0, n).toString('utf8');
        const lines = text.split('\n');
        this.#partial = lines.pop() ?? '';
        for (const line of lines) {
          const event = parseEventLine(line);
          if (event) this.#onEvent(event);
        }
      }
    } finally {
      closeSync(fd);
    }
  }
}
