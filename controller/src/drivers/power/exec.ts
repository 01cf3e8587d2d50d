import { execa } from 'execa';
import { PowerToolMissingError } from './errors.ts';

/** What one run of an IPMI tool produced. */
export interface ToolOutput {
  stdout: string;
  stderr: string;
  /** undefined when the tool was killed (timeout). */
  exitCode: number | undefined;
  /** The tool outlived `timeoutMs` and was killed. */
  timedOut: boolean;
}

export interface ToolRun {
  bin: string;
  /** Debian package that ships `bin`, named when it is missing. */
  pkg: string;
  args: string[];
  /** Added to a minimal environment (PATH, LANG=C): the place for passwords, never `args`. */
  env?: Record<string, string>;
  /** Hard limit: the tool is killed (SIGTERM, SIGKILL 1 s later) after this long. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * Runs an IPMI tool with execa: no shell, stdin closed, C locale so the text
 * is parseable, a hard timeout and cancellation. Resolves with the output
 * whatever the exit code; rejects only when the tool is missing or the caller
 * aborted.
 */
export async function runTool(run: ToolRun): Promise<ToolOutput> {
  const result = await execa(run.bin, run.args, {
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C', LC_ALL: 'C', ...run.env },
    extendEnv: false,
    stdin: 'ignore',
    reject: false,
    timeout: run.timeoutMs,
    forceKillAfterDelay: 1_000,
    cancelSignal: run.signal,
    stripFinalNewline: true,
  });
  if (result.code === 'ENOENT') throw new PowerToolMissingError(run.bin, run.pkg);
  if (result.isCanceled) throw run.signal?.reason ?? new Error('cancelled');
  return {
    stdout: String(result.stdout ?? ''),
    stderr: String(result.stderr ?? ''),
    exitCode: result.exitCode,
    timedOut: result.timedOut,
  };
}
