import type { SecretSource } from './args.ts';
import type { ConnectionSettings, Inventory } from './connection.ts';
import type { Printer } from './output.ts';

/** What every command's action gets: the controller, the printer and where secrets come from. */
export interface CommandContext {
  /** Connects on first use with the global `--endpoint`/`--token` settings; later calls reuse it. */
  inventory(): Promise<Inventory>;
  /** Prints in the global `--output` format. */
  printer(): Printer;
  secrets: SecretSource;
  /** Connection settings from the global flags, for commands that open their own clients (streams). */
  connection(): Promise<ConnectionSettings>;
  /** Progress for people, e.g. an upload's bar: stderr, whether it is a terminal, and its width. */
  progress: { write: (text: string) => void; tty: boolean; columns?: number | undefined };
  /** Live displays that are a command's output (watches): stdout, whether it is a terminal, and its width. */
  stdout: { write: (text: string) => void; tty: boolean; columns?: number | undefined };
  /** Milliseconds since the epoch: timestamps of live displays and durations of running steps. */
  now(): number;
}
