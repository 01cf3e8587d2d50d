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
  /** Progress for people, e.g. an upload's bar: stderr, and whether it is a terminal. */
  progress: { write: (text: string) => void; tty: boolean };
}
