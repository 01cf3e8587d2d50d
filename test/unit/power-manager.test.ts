import { describe, expect, it } from 'vitest';
import { resolveBmcOptions, type StoredBmcOptions } from '../../controller/src/drivers/power/bmc-options.ts';
import { BmcQueue, KeyedSerialQueue, Semaphore } from '../../controller/src/drivers/power/bmc-queue.ts';
import {
  BmcAuthError,
  BmcUnreachableError,
  BootDeviceMismatchError,
  PowerStateTimeoutError,
} from '../../controller/src/drivers/power/errors.ts';
import {
  type BmcTarget,
  type BootDevice,
  type BootDeviceSetting,
  type PowerCommand,
  type PowerDriver,
  type PowerState,
  Secret,
} from '../../controller/src/drivers/power/power-driver.ts';
import { PowerManager } from '../../controller/src/drivers/power/power-manager.ts';
import type { PowerNode } from '../../controller/src/drivers/power/registry.ts';
import { createLogger } from '../../controller/src/log/logger.ts';

// The manager's policies (queueing, retries, confirmation by polling) against fake BMCs with real
// state, named after how they behave. The real drivers are tested against ipmi_sim in integration.

/** A BMC whose chassis follows commands after `lagPolls` status reads; counts what it was sent. */
class LaggingBmc implements PowerDriver {
  readonly name = 'fake';
  state: PowerState = 'off';
  boot: BootDeviceSetting = { device: 'none', persistent: false, uefi: false };
  readonly sent: string[] = [];
  statusReads = 0;
  #pending: { state: PowerState; polls: number } | undefined;
  /** Status reads that fail as unreachable before the BMC answers again. */
  failNextReads = 0;
  /** The OS ignores the ACPI power button. */
  ignoresSoftOff = false;
  /** Stores `other` whatever device it is given. */
  keepsOwnBootDevice = false;
  lagPolls = 0;

  async powerState(bmc: BmcTarget): Promise<PowerState> {
    this.statusReads++;
    if (this.failNextReads > 0) {
      this.failNextReads--;
      throw new BmcUnreachableError({
        bmc: `${bmc.host}:${bmc.port}`,
        driver: 'fake',
        bmcMessage: 'connection timeout',
      });
    }
    if (this.#pending && this.#pending.polls-- <= 0) {
      this.state = this.#pending.state;
      this.#pending = undefined;
    }
    return this.state;
  }

  async power(_bmc: BmcTarget, command: PowerCommand): Promise<void> {
    this.sent.push(command);
    if (command === 'soft-off' && this.ignoresSoftOff) return;
    const target = command === 'off' || command === 'soft-off' ? 'off' : 'on';
    this.#pending = { state: target, polls: this.lagPolls };
  }

  async setBootDevice(_bmc: BmcTarget, device: BootDevice, opts: { persistent: boolean; uefi: boolean }) {
    this.sent.push(`boot ${device}`);
    this.boot = {
      device: this.keepsOwnBootDevice ? 'other' : device,
      persistent: opts.persistent,
      uefi: opts.uefi,
    };
  }

  async bootDevice(): Promise<BootDeviceSetting> {
    return this.boot;
  }
}

/** Refuses every login, as a BMC with the wrong password does. */
class WrongPasswordBmc extends LaggingBmc {
  override async powerState(bmc: BmcTarget): Promise<PowerState> {
    this.statusReads++;
    throw new BmcAuthError({
      bmc: `${bmc.host}:${bmc.port}`,
      driver: 'fake',
      bmcMessage: 'password invalid',
    });
  }
}

/** Answers nothing for two status reads right after a power command, as many BMCs do. */
class DropsSessionsWhileSwitchingBmc extends LaggingBmc {
  override async power(bmc: BmcTarget, command: PowerCommand): Promise<void> {
    await super.power(bmc, command);
    this.failNextReads = 2;
  }
}

function setup(driver: PowerDriver, options: StoredBmcOptions = {}) {
  const manager = new PowerManager({
    drivers: new Map([['fake', driver]]),
    log: createLogger('silent'),
    backoffMs: 1,
    maxPollIntervalMs: 5,
  });
  const node: PowerNode = {
    name: 'n1',
    driver: 'fake',
    bmc: {
      host: '10.0.2.1',
      port: 623,
      username: 'root',
      password: new Secret('calvin'),
      options: resolveBmcOptions({ powerWaitMs: 5_000, ...options }),
    },
  };
  return { manager, node };
}

describe('PowerManager', () => {
  it('confirms a power change by polling until the BMC reports it', async () => {
    const bmc = new LaggingBmc();
    bmc.lagPolls = 3;
    const { manager, node } = setup(bmc);
    expect(await manager.setPower(node, 'on')).toEqual({ state: 'on', sent: ['on'], forcedOff: false });
    // One read before the command, then polls until the lag is over.
    expect(bmc.statusReads).toBe(1 + 4);
  });

  it('sends nothing when the node already is in the target state', async () => {
    const bmc = new LaggingBmc();
    const { manager, node } = setup(bmc);
    expect(await manager.setPower(node, 'off')).toEqual({ state: 'off', sent: [], forcedOff: false });
    expect(await manager.setPower(node, 'soft-off')).toMatchObject({ sent: [] });
    expect(bmc.sent).toEqual([]);
  });

  it('powers on a node that is off when asked to reset or cycle it', async () => {
    const bmc = new LaggingBmc();
    const { manager, node } = setup(bmc);
    expect(await manager.setPower(node, 'reset')).toMatchObject({ state: 'on', sent: ['on'] });
    expect(await manager.setPower(node, 'cycle')).toMatchObject({ state: 'on', sent: ['cycle'] });
  });

  it('falls back to a hard off when the OS ignores the soft off', async () => {
    const bmc = new LaggingBmc();
    bmc.state = 'on';
    bmc.ignoresSoftOff = true;
    const { manager, node } = setup(bmc);
    const change = await manager.setPower(node, 'soft-off', { softOffTimeoutMs: 20 });
    expect(change).toEqual({ state: 'off', sent: ['soft-off', 'off'], forcedOff: true });
  });

  it('rejects with POWER_STATE_TIMEOUT when the chassis never gets there', async () => {
    const bmc = new LaggingBmc();
    bmc.lagPolls = Number.POSITIVE_INFINITY;
    const { manager, node } = setup(bmc, { powerWaitMs: 1_000 });
    const err = await manager.setPower(node, 'on').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PowerStateTimeoutError);
    expect((err as PowerStateTimeoutError).reason).toBe('POWER_STATE_TIMEOUT');
    expect((err as Error).message).toMatch(/still reports off/);
  });

  it('retries transient failures up to the node’s retries, then gives up', async () => {
    const bmc = new LaggingBmc();
    bmc.failNextReads = 2;
    const { manager, node } = setup(bmc, { retries: 2 });
    expect(await manager.powerState(node)).toBe('off');
    expect(bmc.statusReads).toBe(3);

    bmc.failNextReads = 3;
    const err = await manager.powerState(node).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BmcUnreachableError);
    expect((err as BmcUnreachableError).metadata.node).toBe('n1');

    // The power sync asks without retries: it asks again next round.
    bmc.failNextReads = 1;
    const reads = bmc.statusReads;
    await expect(manager.powerState(node, { retries: 0 })).rejects.toBeInstanceOf(BmcUnreachableError);
    expect(bmc.statusReads).toBe(reads + 1);
  });

  it('keeps polling through transient failures while the chassis changes state', async () => {
    const bmc = new DropsSessionsWhileSwitchingBmc();
    const { manager, node } = setup(bmc, { retries: 0 });
    expect((await manager.setPower(node, 'on')).state).toBe('on');
    // Read before, two failed polls, the poll that sees it on.
    expect(bmc.statusReads).toBe(4);
  });

  it('never retries an authentication failure', async () => {
    const bmc = new WrongPasswordBmc();
    const { manager, node } = setup(bmc, { retries: 5 });
    const err = await manager.powerState(node).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BmcAuthError);
    expect(bmc.statusReads).toBe(1);
  });

  it('reads the boot device back and rejects one the BMC did not keep', async () => {
    const bmc = new LaggingBmc();
    const { manager, node } = setup(bmc);
    expect(await manager.setBootDevice(node, 'pxe', { persistent: true, uefi: false })).toEqual({
      device: 'pxe',
      persistent: true,
      uefi: false,
    });
    bmc.keepsOwnBootDevice = true;
    const err = await manager
      .setBootDevice(node, 'disk', { persistent: false, uefi: false })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BootDeviceMismatchError);
  });

  it('says which nodes have an operation under way', async () => {
    const bmc = new LaggingBmc();
    bmc.lagPolls = 2;
    const { manager, node } = setup(bmc);
    const pending = manager.setPower(node, 'on');
    expect(manager.busy('n1')).toBe(true);
    await pending;
    expect(manager.busy('n1')).toBe(false);
  });
});

/** A promise and the function that settles it, to hold a task open in a test. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

describe('BmcQueue', () => {
  it('runs one command at a time per BMC, in order', async () => {
    const queue = new KeyedSerialQueue();
    const order: string[] = [];
    const first = gate();
    const a = queue.run('bmc1', async () => {
      order.push('a start');
      await first.promise;
      order.push('a end');
    });
    const b = queue.run('bmc1', async () => {
      order.push('b');
    });
    const other = queue.run('bmc2', async () => {
      order.push('other bmc');
    });
    await other;
    expect(order).toEqual(['a start', 'other bmc']);
    first.open();
    await Promise.all([a, b]);
    expect(order).toEqual(['a start', 'other bmc', 'a end', 'b']);
    expect(queue.busyKeys).toBe(0);
  });

  it('an aborted waiter does not let the next command overtake the running one', async () => {
    const queue = new KeyedSerialQueue();
    const held = gate();
    const order: string[] = [];
    const running = queue.run('bmc', async () => {
      await held.promise;
      order.push('running done');
    });
    const abort = new AbortController();
    const aborted = queue.run('bmc', async () => order.push('never'), abort.signal);
    const next = queue.run('bmc', async () => order.push('next'));
    abort.abort(new Error('client went away'));
    await expect(aborted).rejects.toThrow('client went away');
    held.open();
    await Promise.all([running, next]);
    expect(order).toEqual(['running done', 'next']);
  });

  it('holds at most `limit` commands in flight, and a slow BMC holds only one slot', async () => {
    const queue = new BmcQueue(2);
    let inFlight = 0;
    let peak = 0;
    const slow = gate();
    const task = (wait?: Promise<void>) => async () => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await (wait ?? Promise.resolve());
      await new Promise((r) => setImmediate(r));
      inFlight--;
    };
    // Three commands queue on the slow BMC; ten other BMCs still get through on the other slot.
    const slowOnes = [
      queue.run('slow', task(slow.promise)),
      queue.run('slow', task()),
      queue.run('slow', task()),
    ];
    await Promise.all(Array.from({ length: 10 }, (_, i) => queue.run(`bmc${i}`, task())));
    expect(peak).toBe(2);
    slow.open();
    await Promise.all(slowOnes);
    expect(queue.active).toBe(0);
  });

  it('Semaphore hands slots over in arrival order and forgets aborted waiters', async () => {
    const sem = new Semaphore(1);
    const release = await sem.acquire();
    const abort = new AbortController();
    const order: string[] = [];
    const first = sem.acquire().then((r) => {
      order.push('first');
      return r;
    });
    const gone = sem.acquire(abort.signal);
    const second = sem.acquire().then((r) => {
      order.push('second');
      return r;
    });
    abort.abort(new Error('gone'));
    await expect(gone).rejects.toThrow('gone');
    release();
    (await first)();
    (await second)();
    expect(order).toEqual(['first', 'second']);
    expect(sem.active).toBe(0);
    expect(sem.waiting).toBe(0);
  });
});
