import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CONTROLLER_MAIN = fileURLToPath(new URL('../../controller/src/main.ts', import.meta.url));
/** A safety net for the start, not an expectation. @default 120 s */
const START_TIMEOUT_MS = 120_000;

/** `ingot-controller` as an operator runs it: its own process (and event loop), JSON logs on stdout. */
export interface ControllerProcess {
  pid: number;
  grpcAddress: string;
  token: string;
  /** CPU time the process has used so far (user + system, all threads), in milliseconds. */
  cpuMs(): number;
  /** SIGTERM, then waits for the exit. */
  stop(): Promise<void>;
}

/**
 * Starts the controller on `database` with a fresh data dir; resolves once it serves.
 * `nodeArgs` go to Node.js itself (e.g. `--cpu-prof` to profile the controller under load);
 * `controllerArgs` go to the controller after the defaults here, so they win (e.g. `--grpc-listen`,
 * `--config FILE`).
 */
export async function startControllerProcess(
  database: string,
  dataDir: string,
  opts: { nodeArgs?: readonly string[]; controllerArgs?: readonly string[] } = {},
): Promise<ControllerProcess> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('INGOT_')));
  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...(opts.nodeArgs ?? []),
      CONTROLLER_MAIN,
      '--data-dir',
      dataDir,
      '--database',
      database,
      '--grpc-listen',
      '127.0.0.1:0',
      '--http-listen',
      '127.0.0.1:0',
      '--log-level',
      'info',
      ...(opts.controllerArgs ?? []),
    ],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error('the controller process did not start');
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let output = '';
  const grpcAddress = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`controller did not serve in time:\n${output}`)),
      START_TIMEOUT_MS,
    );
    const onData = (chunk: string) => {
      output += chunk;
      for (const line of output.split('\n')) {
        if (!line.includes('"controller serving"')) continue;
        clearTimeout(timer);
        resolve((JSON.parse(line) as { grpc: string }).grpc);
      }
    };
    child.stdout?.setEncoding('utf8').on('data', onData);
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`controller exited (${code ?? signal}) before serving:\n${output}`));
    });
  });
  // Keep draining its logs so that it never blocks on a full pipe; only errors are of interest.
  child.stdout?.removeAllListeners('data').on('data', (chunk: string) => {
    for (const line of chunk.split('\n')) {
      if (/"level":"(error|fatal)"/.test(line)) process.stderr.write(`controller: ${line}\n`);
    }
  });
  return {
    pid,
    grpcAddress,
    token: readFileSync(join(dataDir, 'admin.token'), 'utf8').trim(),
    cpuMs: () => processCpuMs(pid),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

const CLOCK_TICKS_PER_S = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** utime + stime of a Linux process from /proc/PID/stat, in milliseconds. */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
}
