import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../log/logger.ts';
import { NetbootError } from './netboot-errors.ts';

export interface DnsmasqSupervisorOptions {
  binary: string;
  confFile: string;
  /** Run inside this network namespace (`ip netns exec`). */
  netns: string;
  log: Logger;
  /** Waiting for dnsmasq to start or to confirm a reload. @default 10000 ms */
  timeoutMs?: number;
}

/**
 * Runs one dnsmasq in the foreground as the controller's child and keeps it
 * running: an unexpected exit is logged and followed by a restart (leases
 * survive in the lease file), with a growing delay if it keeps dying. Its
 * log lines (stderr) are how the controller learns that dnsmasq read a host
 * entry file: `lines` emits each one. Stopped by its PID only.
 */
export class DnsmasqSupervisor extends EventEmitter<{ line: [string]; restarted: [number] }> {
  readonly #o: DnsmasqSupervisorOptions;
  readonly #timeoutMs: number;
  #child: ChildProcess | undefined;
  #stopping = false;
  #restartDelayMs = 100;
  #restartTimer: NodeJS.Timeout | undefined;
  /** How many times dnsmasq died on its own and was started again. */
  restarts = 0;

  constructor(o: DnsmasqSupervisorOptions) {
    super();
    this.#o = o;
    this.#timeoutMs = o.timeoutMs ?? 10_000;
  }

  get pid(): number | undefined {
    return this.#child?.exitCode === null ? this.#child.pid : undefined;
  }

  /** Starts dnsmasq; resolves once it serves, rejects with its own message if it refuses the config. */
  async start(): Promise<void> {
    this.#stopping = false;
    await this.#stopLeftover();
    await this.#spawn();
  }

  /** `<conf>.pid`: the running child's PID, so that a controller that was killed finds its dnsmasq again. */
  get #pidFile(): string {
    return `${this.#o.confFile}.pid`;
  }

  /**
   * A controller killed without its shutdown leaves its dnsmasq running (it ignores the broken log
   * pipe), holding the DHCP and TFTP ports. It is stopped, by the PID this supervisor recorded and
   * only if that process still is a dnsmasq on this configuration.
   */
  async #stopLeftover(): Promise<void> {
    let pid: number;
    try {
      pid = Number(readFileSync(this.#pidFile, 'utf8').trim());
    } catch {
      return;
    }
    const ours = () => {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return argv.includes(`--conf-file=${this.#o.confFile}`);
      } catch {
        return false;
      }
    };
    if (!Number.isInteger(pid) || pid <= 0 || !ours()) return;
    this.#o.log.warn({ pid }, 'stopping the dnsmasq a previous run of this controller left running');
    process.kill(pid, 'SIGTERM');
    for (let waited = 0; ours() && waited < 5_000; waited += 50) await sleep(50);
    if (ours()) process.kill(pid, 'SIGKILL');
    while (ours()) await sleep(50);
  }

  /** Sends SIGHUP (re-read host entries) and resolves once dnsmasq logged reading `marker`. */
  async reload(marker: string): Promise<void> {
    const pid = this.pid;
    if (pid === undefined)
      throw new NetbootError('DNSMASQ_NOT_RUNNING', 'dnsmasq is not running; see the log for why');
    const read = this.waitForLine((l) => l.endsWith(`read ${marker}`), 'reload');
    process.kill(pid, 'SIGHUP');
    await read;
  }

  /** Resolves with the first log line (after this call) that `match` accepts. */
  waitForLine(match: (line: string) => boolean, what: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const onLine = (line: string) => {
        if (!match(line)) return;
        clearTimeout(timer);
        this.off('line', onLine);
        resolve(line);
      };
      const timer = setTimeout(() => {
        this.off('line', onLine);
        reject(
          new NetbootError(
            'DNSMASQ_NO_CONFIRMATION',
            `dnsmasq did not confirm the ${what} within ${this.#timeoutMs} ms; check the controller log for its messages`,
          ),
        );
      }, this.#timeoutMs);
      this.on('line', onLine);
    });
  }

  /** SIGTERM by PID, SIGKILL after 5 s; no restart afterwards. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#restartTimer);
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
    rmSync(this.#pidFile, { force: true });
  }

  #spawn(): Promise<void> {
    const args = [
      '--keep-in-foreground',
      `--conf-file=${this.#o.confFile}`,
      '--log-facility=-',
      // The PID is the child's; no pid file to go stale.
      '--pid-file=',
    ];
    const [bin, argv] = this.#o.netns
      ? ['ip', ['netns', 'exec', this.#o.netns, this.#o.binary, ...args]]
      : [this.#o.binary, args];
    const child = spawn(bin, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#child = child;
    // `ip netns exec` execs dnsmasq: the PID stays the same.
    if (child.pid !== undefined) writeFileSync(this.#pidFile, `${child.pid}\n`);
    const log = this.#o.log.child({ component: 'dnsmasq', pid: child.pid });
    const recent: string[] = [];
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
      recent.push(line);
      if (recent.length > 20) recent.shift();
      log.debug({ line }, 'dnsmasq');
      this.emit('line', line);
    });
    return new Promise<void>((resolve, reject) => {
      let started = false;
      const onLine = (line: string) => {
        // "dnsmasq-tftp[123]: TFTP root is …" is the last line of a successful start.
        if (/TFTP root is|DHCP, sockets bound/.test(line) && !started) {
          started = true;
          this.off('line', onLine);
          clearTimeout(timer);
          this.#restartDelayMs = 100;
          log.info('dnsmasq started');
          resolve();
        }
      };
      const timer = setTimeout(() => {
        this.off('line', onLine);
        child.kill('SIGKILL');
        reject(
          new NetbootError('DNSMASQ_START_FAILED', `dnsmasq did not start within ${this.#timeoutMs} ms`),
        );
      }, this.#timeoutMs);
      this.on('line', onLine);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(
          new NetbootError(
            'DNSMASQ_START_FAILED',
            `cannot run ${this.#o.binary}: ${err.message}; install the Debian package dnsmasq`,
          ),
        );
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        this.off('line', onLine);
        if (!started) {
          reject(
            new NetbootError(
              'DNSMASQ_START_FAILED',
              `dnsmasq exited at start (${signal ?? `code ${code}`}): ${recent.slice(-3).join(' | ') || 'no message'}`,
            ),
          );
          return;
        }
        if (this.#stopping) {
          log.info({ code, signal }, 'dnsmasq stopped');
          return;
        }
        log.error({ code, signal, last: recent.slice(-3) }, 'dnsmasq died; restarting it');
        this.#scheduleRestart(log);
      });
    });
  }

  #scheduleRestart(log: Logger): void {
    if (this.#stopping) return;
    const delayMs = this.#restartDelayMs;
    this.#restartDelayMs = Math.min(this.#restartDelayMs * 2, 10_000);
    this.#restartTimer = setTimeout(() => {
      this.#spawn().then(
        () => {
          this.restarts++;
          this.emit('restarted', this.restarts);
        },
        (err: unknown) => {
          log.error({ err, retryInMs: this.#restartDelayMs }, 'dnsmasq restart failed');
          this.#scheduleRestart(log);
        },
      );
    }, delayMs);
  }
}
