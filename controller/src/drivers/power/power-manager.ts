import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../log/logger.ts';
import { BmcQueue, KeyedSerialQueue } from './bmc-queue.ts';
import { BmcError, BootDeviceMismatchError, PowerStateTimeoutError } from './errors.ts';
import type { BootDevice, BootDeviceSetting, PowerCommand, PowerState } from './power-driver.ts';
import { bmcKey } from './power-driver.ts';
import { driverFor, type PowerDrivers, type PowerNode } from './registry.ts';

export interface PowerManagerOptions {
  drivers: PowerDrivers;
  log: Logger;
  /** BMC commands in flight at once across all BMCs. @default 16 */
  maxConcurrent?: number;
  /** First wait before retrying a transient failure; doubles each time, jittered. @default 500 */
  backoffMs?: number;
  /** Longest wait between two power-state polls while confirming a change. @default 2000 */
  maxPollIntervalMs?: number;
}

/** A confirmed power change. */
export interface PowerChange {
  /** What the BMC reports now: the target state. */
  state: PowerState;
  /** Power commands actually sent (none when the node already was in the target state). */
  sent: PowerCommand[];
  /** A soft off that did not finish within its time and was followed by a hard off. */
  forcedOff: boolean;
}

/** The state a command leads to once it has taken effect. */
export function targetStateOf(command: PowerCommand): PowerState {
  return command === 'off' || command === 'soft-off' ? 'off' : 'on';
}

/**
 * The BMC layer the controller uses, for every driver alike: one command at
 * a time per BMC under a global limit, retries of transient failures with
 * jittered exponential backoff (never of an authentication failure: BMCs lock
 * accounts), and power changes confirmed by polling the BMC until it reports
 * the target state within the node's `powerWaitMs`.
 */
export class PowerManager {
  readonly #drivers: PowerDrivers;
  readonly #log: Logger;
  readonly #queue: BmcQueue;
  readonly #operations = new KeyedSerialQueue();
  readonly #inFlight = new Map<string, number>();
  readonly #backoffMs: number;
  readonly #maxPollMs: number;

  constructor(opts: PowerManagerOptions) {
    this.#drivers = opts.drivers;
    this.#log = opts.log.child({ component: 'power' });
    this.#queue = new BmcQueue(opts.maxConcurrent ?? 16);
    this.#backoffMs = opts.backoffMs ?? 500;
    this.#maxPollMs = opts.maxPollIntervalMs ?? 2_000;
  }

  /** The global limit on BMC commands in flight. */
  get maxConcurrent(): number {
    return this.#queue.limit;
  }

  /** True while a power change or boot-device change for this node is under way in this process. */
  busy(nodeName: string): boolean {
    return (this.#inFlight.get(nodeName) ?? 0) > 0;
  }

  /**
   * Asks the BMC (one status command, retried if transient). `retries` overrides the node's, e.g.
   * 0 for the power sync, which asks again next round anyway.
   */
  powerState(node: PowerNode, opts: { signal?: AbortSignal; retries?: number } = {}): Promise<PowerState> {
    const driver = driverFor(this.#drivers, node);
    return this.#command(
      node,
      'power status',
      (signal) => driver.powerState(node.bmc, { signal }),
      opts.signal,
      opts.retries,
    );
  }

  /**
   * Changes power and resolves once the BMC reports the resulting state.
   * `on`/`off`/`soft-off` do nothing when the node already is there; `reset`
   * and `cycle` of a node that is off power it on. `soft-off` waits
   * `softOffTimeoutMs` for the OS to shut down, then powers off hard.
   * Rejects with a BmcError, or PowerStateTimeoutError when the BMC accepted
   * the command but never reported the target state.
   */
  setPower(
    node: PowerNode,
    command: PowerCommand,
    opts: { signal?: AbortSignal; softOffTimeoutMs?: number } = {},
  ): Promise<PowerChange> {
    return this.#operation(node, opts.signal, async () => {
      const driver = driverFor(this.#drivers, node);
      const send = (c: PowerCommand) =>
        this.#command(node, `power ${c}`, (signal) => driver.power(node.bmc, c, { signal }), opts.signal);
      const current = await this.powerState(node, opts);
      const target = targetStateOf(command);
      const sent: PowerCommand[] = [];
      if ((command === 'on' || command === 'off' || command === 'soft-off') && current === target) {
        return { state: current, sent, forcedOff: false };
      }
      const effective: PowerCommand =
        (command === 'reset' || command === 'cycle') && current === 'off' ? 'on' : command;
      await send(effective);
      sent.push(effective);
      if (effective === 'soft-off') {
        const softMs = opts.softOffTimeoutMs ?? node.bmc.options.powerWaitMs;
        const reached = await this.#waitFor(node, 'off', softMs, opts.signal, { throwOnTimeout: false });
        if (reached) return { state: 'off', sent, forcedOff: false };
        this.#log.warn(
          { node: node.name, waitedMs: softMs },
          'soft power off did not finish; powering off hard',
        );
        await send('off');
        sent.push('off');
        await this.#waitFor(node, 'off', node.bmc.options.powerWaitMs, opts.signal);
        return { state: 'off', sent, forcedOff: true };
      }
      await this.#waitFor(node, target, node.bmc.options.powerWaitMs, opts.signal);
      return { state: target, sent, forcedOff: false };
    });
  }

  /** Sets the boot device, then reads it back; rejects if the BMC kept another device. */
  setBootDevice(
    node: PowerNode,
    device: BootDevice,
    opts: { persistent: boolean; uefi: boolean; signal?: AbortSignal },
  ): Promise<BootDeviceSetting> {
    return this.#operation(node, opts.signal, async () => {
      const driver = driverFor(this.#drivers, node);
      await this.#command(
        node,
        `boot device ${device}`,
        (signal) => driver.setBootDevice(node.bmc, device, { ...opts, signal }),
        opts.signal,
      );
      const setting = await this.bootDevice(node, opts);
      if (setting.device !== device) {
        throw new BootDeviceMismatchError({
          bmc: bmcKey(node.bmc),
          driver: driver.name,
          wanted: device,
          got: setting.device,
        }).forNode(node.name);
      }
      return setting;
    });
  }

  bootDevice(node: PowerNode, opts: { signal?: AbortSignal } = {}): Promise<BootDeviceSetting> {
    const driver = driverFor(this.#drivers, node);
    return this.#command(
      node,
      'boot device get',
      (signal) => driver.bootDevice(node.bmc, { signal }),
      opts.signal,
    );
  }

  /** Polls until the BMC reports `target`: at once, then at growing intervals up to maxPollIntervalMs. */
  async #waitFor(
    node: PowerNode,
    target: PowerState,
    waitMs: number,
    signal: AbortSignal | undefined,
    { throwOnTimeout = true } = {},
  ): Promise<boolean> {
    const started = Date.now();
    let interval = 250;
    let observed = 'unknown';
    for (;;) {
      try {
        observed = await this.powerState(node, { signal });
        if (observed === target) return true;
      } catch (err) {
        // BMCs drop sessions while the chassis changes state: keep polling; credentials won't heal.
        if (!(err instanceof BmcError) || !err.transient) throw err;
        observed = `unknown (${err.bmcMessage})`;
      }
      const left = waitMs - (Date.now() - started);
      if (left <= 0) break;
      await sleep(Math.min(interval, left), undefined, { signal });
      interval = Math.min(interval * 2, this.#maxPollMs);
    }
    if (!throwOnTimeout) return false;
    throw new PowerStateTimeoutError({
      bmc: bmcKey(node.bmc),
      target,
      observed,
      waitedMs: Date.now() - started,
    });
  }

  /** One driver call through the BMC's queue, retried while the failure is transient. */
  async #command<T>(
    node: PowerNode,
    what: string,
    call: (signal: AbortSignal | undefined) => Promise<T>,
    signal: AbortSignal | undefined,
    retries = node.bmc.options.retries,
  ): Promise<T> {
    const key = bmcKey(node.bmc);
    const attempts = 1 + retries;
    for (let attempt = 1; ; attempt++) {
      const started = performance.now();
      try {
        const result = await this.#queue.run(key, () => call(signal), signal);
        this.#log.debug(
          {
            node: node.name,
            bmc: key,
            driver: node.driver,
            command: what,
            ms: Math.round(performance.now() - started),
          },
          'bmc command',
        );
        return result;
      } catch (err) {
        if (!(err instanceof BmcError)) throw err;
        err.forNode(node.name);
        if (!err.transient || attempt >= attempts) {
          this.#log.info(
            {
              node: node.name,
              bmc: key,
              command: what,
              reason: err.reason,
              bmcMessage: err.bmcMessage,
              attempts: attempt,
            },
            'bmc command failed',
          );
          throw err;
        }
        const backoff = this.#backoffMs * 2 ** (attempt - 1);
        const delay = Math.round(backoff / 2 + Math.random() * (backoff / 2));
        this.#log.warn(
          {
            node: node.name,
            bmc: key,
            command: what,
            reason: err.reason,
            bmcMessage: err.bmcMessage,
            retryInMs: delay,
          },
          'bmc command failed; retrying',
        );
        await sleep(delay, undefined, { signal });
      }
    }
  }

  async #operation<T>(node: PowerNode, signal: AbortSignal | undefined, body: () => Promise<T>): Promise<T> {
    this.#inFlight.set(node.name, (this.#inFlight.get(node.name) ?? 0) + 1);
    try {
      return await this.#operations.run(node.name, body, signal);
    } finally {
      const left = (this.#inFlight.get(node.name) ?? 1) - 1;
      if (left === 0) this.#inFlight.delete(node.name);
      else this.#inFlight.set(node.name, left);
    }
  }
}
