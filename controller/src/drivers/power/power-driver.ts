import type { BmcOptions } from './bmc-options.ts';

/** What the BMC reports. */
export type PowerState = 'on' | 'off';

/**
 * A chassis power command. `soft-off` is the ACPI power button (the OS shuts down);
 * `off` cuts power at once; `reset` is a warm reset; `cycle` is off, then on.
 */
export type PowerCommand = 'on' | 'off' | 'soft-off' | 'reset' | 'cycle';

/** Where a node boots from next. */
export type BootDevice = 'pxe' | 'disk';

export interface BootDeviceSetting {
  /** `none` when the BMC holds no override (the firmware's own boot order applies). */
  device: BootDevice | 'none' | 'other';
  /** For every future boot rather than the next one only. */
  persistent: boolean;
  /** UEFI rather than legacy BIOS boot. */
  uefi: boolean;
}

/** A secret that never prints: JSON and inspection show `[redacted]`. */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toJSON(): string {
    return '[redacted]';
  }

  toString(): string {
    return '[redacted]';
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return '[redacted]';
  }
}

/** How to reach one BMC. */
export interface BmcTarget {
  host: string;
  /** UDP port. @default 623 */
  port: number;
  username: string;
  password: Secret;
  options: BmcOptions;
}

/** `host:port` — the key of the per-BMC queue and what messages name. */
export function bmcKey(bmc: Pick<BmcTarget, 'host' | 'port'>): string {
  return bmc.host.includes(':') ? `[${bmc.host}]:${bmc.port}` : `${bmc.host}:${bmc.port}`;
}

export interface CallOptions {
  /** Aborts the running tool (it is killed) and rejects. */
  signal?: AbortSignal;
}

/**
 * One way of talking to a BMC: each method is one tool invocation, parsed.
 * Failures reject with a BmcError subclass (errors.ts) saying whether a retry
 * may help. Retries, per-BMC serialisation and confirmation that a power
 * change happened live in PowerManager, shared by every driver.
 * Never puts the password on a command line or in a log.
 */
export interface PowerDriver {
  readonly name: string;
  powerState(bmc: BmcTarget, opts?: CallOptions): Promise<PowerState>;
  /** Sends the command; resolves when the BMC accepted it, not when the chassis got there. */
  power(bmc: BmcTarget, command: PowerCommand, opts?: CallOptions): Promise<void>;
  setBootDevice(
    bmc: BmcTarget,
    device: BootDevice,
    opts: CallOptions & { persistent: boolean; uefi: boolean },
  ): Promise<void>;
  bootDevice(bmc: BmcTarget, opts?: CallOptions): Promise<BootDeviceSetting>;
}
