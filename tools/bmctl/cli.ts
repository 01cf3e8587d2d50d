import { Command, CommanderError, Option } from 'commander';
import { registerAggregateCommands } from './commands/aggregate.ts';
import { registerFlavorCommands } from './commands/flavor.ts';
import { registerHostCommands } from './commands/host.ts';
import { registerImageCommands } from './commands/image.ts';
import { registerInstanceCommands } from './commands/instance.ts';
import { registerNetworkCommands } from './commands/network.ts';
import { registerNodeCommands } from './commands/node.ts';
import { registerProjectCommands } from './commands/project.ts';
import { registerScheduleCommands } from './commands/schedule.ts';
import { registerSwitchCommands } from './commands/switch.ts';
import { registerTaskCommands } from './commands/task.ts';
import { DEFAULT_ENDPOINT, type Inventory, openInventory, resolveConnectionSettings } from './connection.ts';
import type { CommandContext } from './context.ts';
import { describeFailure, EXIT_USAGE } from './errors.ts';
import { OUTPUT_FORMATS, type OutputFormat, Printer } from './output.ts';

/** bmctl's surroundings; main.ts passes the process's, tests their own. */
export interface BmctlIo {
  env: Record<string, string | undefined>;
  /** Receives whole lines, newline included. */
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** All of stdin, for passwords given as `-`. @default reads process.stdin */
  readStdin?: () => Promise<string>;
  /** Base of `./ingot-data` and relative password files. @default process.cwd() */
  cwd?: string;
  /** Whether stderr is a terminal (progress bars are drawn only there). @default false */
  stderrIsTty?: boolean;
  /** Whether stdout is a terminal (watch displays redraw in place there, else append lines). @default false */
  stdoutIsTty?: boolean;
  /** Terminal widths, so redrawn lines are cut rather than wrapped. @default unlimited */
  stdoutColumns?: number;
  stderrColumns?: number;
  /** The clock of live displays. @default Date.now */
  now?: () => number;
}

interface GlobalOptions {
  endpoint?: string;
  token?: string;
  output: OutputFormat;
}

/**
 * Runs one bmctl command line (`argv` without `node` and the script) and
 * resolves to its exit status: 0 success, 1 the controller or the system
 * refused, 2 the command line is wrong. Expected failures print one line
 * to `io.stderr`; nothing throws.
 */
export async function runBmctl(argv: string[], io: BmctlIo): Promise<number> {
  const program = buildProgram(io);
  let inventory: Inventory | undefined;
  let endpoint = io.env.INGOT_ENDPOINT || DEFAULT_ENDPOINT;
  const globals = () => program.opts<GlobalOptions>();
  const ctx: CommandContext = {
    async inventory() {
      if (inventory === undefined) {
        const settings = await resolveConnectionSettings(globals(), io.env, io.cwd ?? process.cwd());
        endpoint = settings.endpoint;
        inventory = openInventory(settings);
      }
      return inventory;
    },
    printer: () => new Printer(globals().output, io.stdout),
    secrets: { readStdin: io.readStdin ?? readProcessStdin, cwd: io.cwd ?? process.cwd() },
    async connection() {
      const settings = await resolveConnectionSettings(globals(), io.env, io.cwd ?? process.cwd());
      endpoint = settings.endpoint;
      return settings;
    },
    progress: { write: io.stderr, tty: io.stderrIsTty ?? false, columns: io.stderrColumns },
    stdout: { write: io.stdout, tty: io.stdoutIsTty ?? false, columns: io.stdoutColumns },
    now: io.now ?? Date.now,
  };
  for (const register of [
    registerSwitchCommands,
    registerNodeCommands,
    registerProjectCommands,
    registerFlavorCommands,
    registerAggregateCommands,
    registerHostCommands,
    registerInstanceCommands,
    registerScheduleCommands,
    registerNetworkCommands,
    registerImageCommands,
    registerTaskCommands,
  ]) {
    register(program, ctx);
  }

  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    // Commander has already printed its message or the help text.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_USAGE;
    const { line, exitCode } = describeFailure(err, endpoint, { debug: io.env.BMCTL_DEBUG === '1' });
    io.stderr(`bmctl: ${line}\n`);
    return exitCode;
  } finally {
    inventory?.close();
  }
}

/** The root command; settings made here are inherited by every subcommand added later. */
function buildProgram(io: BmctlIo): Command {
  return new Command('bmctl')
    .description(
      'Operate an Ingot controller: switches, nodes, projects, flavors, aggregates, hypervisor hosts, instances and the scheduler.',
    )
    .option(
      '--endpoint <host:port>',
      `controller gRPC address (env INGOT_ENDPOINT; default ${DEFAULT_ENDPOINT})`,
    )
    .option(
      '--token <token>',
      'bearer token (env INGOT_TOKEN; default: the admin token in $INGOT_DATA_DIR/admin.token or ./ingot-data/admin.token)',
    )
    .addOption(new Option('-o, --output <format>', 'table or json').choices(OUTPUT_FORMATS).default('table'))
    .exitOverride()
    .configureOutput({
      writeOut: io.stdout,
      writeErr: io.stderr,
      // Commander's messages start with `error: ` and may put a suggestion on a second line.
      outputError: (message, write) =>
        write(
          `bmctl: ${message
            .replace(/^error: /, '')
            .replace(/\s*\n\s*/g, ' ')
            .trim()}\n`,
        ),
    });
}

async function readProcessStdin(): Promise<string> {
  // Meant for pipes (`pass show bmc | bmctl node add … -`); at a terminal, say what bmctl waits for.
  if (process.stdin.isTTY)
    process.stderr.write('bmctl: reading the password from stdin; end it with Ctrl-D\n');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
