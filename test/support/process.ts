/**
 * The real `ingot-controller` process for tests: spawned with this Node (`process.execPath`), its
 * stdout read as the JSON log lines an operator's log collector would see. Waits have timeouts only
 * as safety nets; a wait that times out or sees the process exit first rejects with its output.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository root, the controller's working directory unless a test picks another. */
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** `controller/src/main.ts` as an absolute path, so that tests can run it from any directory. */
export const CONTROLLER_MAIN = fileURLToPath(new URL('../../controller/src/main.ts', import.meta.url));

/**
 * How long a wait lasts before it gives up: a safety net, not an expectation. PGlite's first start
 * takes seconds, and minutes on a loaded 2-core machine. @default 240 s
 */
const SAFETY_NET_MS = 240_000;

/** One pino line as the controller writes it. */
export interface LogLine {
  level: string;
  time: string;
  msg: string;
  [field: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Addresses from the "controller serving" line. */
export interface Serving {
  grpc: string;
  http: string;
  database: string;
}

export interface SpawnOptions {
  /** @default the repository root */
  cwd?: string;
  /** Added to this process's environment, from which every `INGOT_*` variable is removed first. */
  env?: Record<string, string>;
}

export class ControllerProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves once the process has exited and its output is fully read. */
  readonly exited: Promise<Exit>;
  #stdout = '';
  #stderr = '';
  #exit: Exit | undefined;
  readonly #listeners = new Set<() => void>();

  private constructor(child: ChildProcess) {
    if (child.pid === undefined) throw new Error('the controller process did not start');
    this.child = child;
    this.pid = child.pid;
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      this.#stdout += chunk;
      this.#notify();
    });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.#stderr += chunk;
      this.#notify();
    });
    // 'close' rather than 'exit': by then stdout and stderr are drained.
    this.exited = new Promise((resolve) =>
      child.once('close', (code, signal) => {
        this.#exit = { code, signal };
        this.#notify();
        resolve(this.#exit);
      }),
    );
  }

  /** Starts `node controller/src/main.ts ...args`. */
  static spawn(args: string[], opts: SpawnOptions = {}): ControllerProcess {
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('INGOT_')));
    const child = spawn(process.execPath, [CONTROLLER_MAIN, ...args], {
      cwd: opts.cwd ?? REPO_ROOT,
      env: { ...env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new ControllerProcess(child);
  }

  get stdout(): string {
    return this.#stdout;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** The complete lines written to stdout so far. */
  get lines(): string[] {
    return this.#stdout.split('\n').slice(0, -1);
  }

  /** Every stdout line parsed; throws naming the first line that is not a JSON object. */
  logs(): LogLine[] {
    return this.lines.map((line) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        throw new Error(`stdout line is not JSON: ${line}`);
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new Error(`stdout line is not a JSON object: ${line}`);
      }
      return parsed as LogLine;
    });
  }

  /** Resolves with the first log line whose msg is `msg` (written before or after the call). */
  waitForLog(msg: string, timeoutMs = SAFETY_NET_MS): Promise<LogLine> {
    return this.#waitFor(`a "${msg}" log line`, timeoutMs, () => {
      for (const line of this.lines) {
        try {
          const parsed = JSON.parse(line) as LogLine;
          if (parsed.msg === msg) return parsed;
        } catch {
          // Not a log line; `logs()` reports it where a test asks for valid JSON.
        }
      }
      return undefined;
    });
  }

  /** Waits for "controller serving" and returns the addresses it names. */
  async serving(timeoutMs = SAFETY_NET_MS): Promise<Serving> {
    const line = await this.waitForLog('controller serving', timeoutMs);
    return { grpc: String(line.grpc), http: String(line.http), database: String(line.database) };
  }

  /** Waits for the process to exit on its own. */
  waitForExit(timeoutMs = SAFETY_NET_MS): Promise<Exit> {
    return this.#waitFor('the process to exit', timeoutMs, () => this.#exit, { exitIsFailure: false });
  }

  /** Sends SIGTERM and waits for the exit. */
  terminate(timeoutMs = SAFETY_NET_MS): Promise<Exit> {
    this.signal('SIGTERM');
    return this.waitForExit(timeoutMs);
  }

  signal(signal: NodeJS.Signals): void {
    if (this.#exit === undefined) process.kill(this.pid, signal);
  }

  /** Cleanup safety net: SIGKILL if the process still runs, then waits until it is gone. */
  async kill(): Promise<void> {
    if (this.#exit !== undefined) return;
    this.signal('SIGKILL');
    await this.exited;
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  #waitFor<T>(
    what: string,
    timeoutMs: number,
    check: () => T | undefined,
    { exitIsFailure = true } = {},
  ): Promise<T> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.#listeners.delete(listener);
      };
      const fail = (why: string) => {
        done();
        reject(
          new Error(
            `waiting for ${what}: ${why}\n--- stdout ---\n${this.#stdout}--- stderr ---\n${this.#stderr}`,
          ),
        );
      };
      const listener = () => {
        const found = check();
        if (found !== undefined) {
          done();
          resolve(found);
        } else if (exitIsFailure && this.#exit !== undefined) {
          fail(`the process exited first (${JSON.stringify(this.#exit)})`);
        }
      };
      const timer = setTimeout(() => fail(`not seen within ${timeoutMs} ms`), timeoutMs);
      this.#listeners.add(listener);
      listener();
    });
  }
}

/** Spawns controllers and kills whichever still run at cleanup (afterEach/afterAll). */
export class ProcessTracker {
  readonly #started = new Set<ControllerProcess>();

  spawn(args: string[], opts?: SpawnOptions): ControllerProcess {
    const started = ControllerProcess.spawn(args, opts);
    this.#started.add(started);
    return started;
  }

  async killAll(): Promise<void> {
    const started = [...this.#started];
    this.#started.clear();
    await Promise.all(started.map((p) => p.kill()));
  }
}
