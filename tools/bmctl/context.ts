import type { SecretSource } from './args.ts';
import type { Inventory } from './connection.ts';
import type { Printer } from './output.ts';

/** What every command's action gets: the controller, the printer and where secrets come from. */
export interface CommandContext {
  /** Connects on first use with the global `--endpoint`/`--token` settings; later calls reuse it. */
  inventory(): Promise<Inventory>;
  /** Prints in the global `--output` format. */
  printer(): Printer;
  secrets: SecretSource;
}
