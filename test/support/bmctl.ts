/**
 * bmctl run in-process against a test controller, as an operator on the controller host runs it:
 * the endpoint from INGOT_ENDPOINT, the token from the controller's admin.token through
 * INGOT_DATA_DIR.
 */
import { expect } from 'vitest';
import { runBmctl } from '../../tools/bmctl/cli.ts';

export interface BmctlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Bmctl {
  /** Runs one command; never throws for a failing command. */
  run(...argv: string[]): Promise<BmctlResult>;
  /** Runs a command that must succeed (exit 0, nothing on stderr) and returns its output. */
  ok(...argv: string[]): Promise<string>;
  /** `ok` with `-o json`, parsed. */
  json<T = Record<string, unknown>>(...argv: string[]): Promise<T>;
}

/**
 * `target` and `cwd` are read at each call, so that they may be set in `beforeAll`. `stdin` is what
 * a command reading a password from stdin gets.
 */
export function bmctlAgainst(
  target: () => { address: string; dataDir: string },
  opts: { cwd: () => string; stdin?: string },
): Bmctl {
  const run = async (...argv: string[]): Promise<BmctlResult> => {
    let stdout = '';
    let stderr = '';
    const { address, dataDir } = target();
    const code = await runBmctl(argv, {
      env: { INGOT_ENDPOINT: address, INGOT_DATA_DIR: dataDir },
      stdout: (s) => {
        stdout += s;
      },
      stderr: (s) => {
        stderr += s;
      },
      ...(opts.stdin === undefined ? {} : { readStdin: async () => opts.stdin as string }),
      cwd: opts.cwd(),
    });
    return { code, stdout, stderr };
  };
  const ok = async (...argv: string[]): Promise<string> => {
    const result = await run(...argv);
    expect(result, `bmctl ${argv.join(' ')}`).toMatchObject({ code: 0, stderr: '' });
    return result.stdout;
  };
  return {
    run,
    ok,
    json: async <T>(...argv: string[]) => JSON.parse(await ok(...argv, '-o', 'json')) as T,
  };
}
