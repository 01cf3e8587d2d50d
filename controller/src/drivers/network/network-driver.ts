import type { FieldViolation } from '../../domain/errors.ts';
import type { Secret } from '../power/power-driver.ts';

/** How to reach one switch; built from its row by `switchTargetOf` (registry.ts). */
export interface SwitchTarget {
  /** The switch's name, for messages and logs. */
  name: string;
  host: string;
  /** Absent when the address named none: the driver's protocol default applies (NETCONF: 830, SSH: 22). */
  port?: number;
  username: string;
  password: Secret;
  /** OpenSSH/PEM private key; empty when the switch uses a password. */
  privateKey: Secret;
  /** Pinned SSH host key (`SHA256:…`); empty until first use. */
  hostKeyFingerprint: string;
  /** Driver settings from the switch's `driver_options`, validated by the driver. */
  options: Readonly<Record<string, string>>;
}

/** A network as a driver needs it: Juniper uses the VLAN id, the Linux-bridge driver the bridge. */
export interface NetworkRef {
  name: string;
  vlanId: number;
  /** Linux bridge of the network; empty for switches that only know VLANs. */
  bridge: string;
}

/** Put `port` (an access port) on `network`, leaving whatever network it was on. */
export interface PortChange {
  port: string;
  network: NetworkRef;
}

export interface PortChangeOutcome {
  port: string;
  /** False when the port already was on the network (nothing was committed for it). */
  changed: boolean;
}

/** A port's actual state, read from the switch. */
export interface PortStatus {
  port: string;
  /** `access`, `trunk`, '' when the switch has no switching configuration for it. */
  mode: string;
  /** The VLANs the port is a member of. */
  vlanIds: number[];
  /** Linux-bridge driver: the bridge the interface is attached to ('' for none). */
  bridge: string;
  /** `up`, `down`, or '' when the driver does not read link state. */
  link: string;
}

export interface DriverCallOptions {
  /** Aborting drops the session (the switch rolls back what was not confirmed). */
  signal?: AbortSignal;
  /** Called with the presented SSH host key when none was pinned (trust on first use). */
  onHostKey?: (fingerprint: string) => void;
}

/**
 * Moves access ports between networks on one kind of switch. A batch is one
 * transaction on the switch: either every port of it lands where asked or
 * none does. Failures reject with a SwitchError subclass (errors.ts) that
 * carries the switch's own message and whether a retry may help. Never logs
 * or returns credentials.
 */
export interface NetworkDriver {
  readonly name: string;
  /** Checks `driver_options` without touching the switch. */
  validateOptions(options: Readonly<Record<string, string>>): FieldViolation[];
  /** Applies every change in one transaction; ports already where asked are reported unchanged. */
  applyPortChanges(
    sw: SwitchTarget,
    changes: readonly PortChange[],
    opts?: DriverCallOptions,
  ): Promise<PortChangeOutcome[]>;
  /** Reads a port's state from the switch itself (not from Ingot's records). */
  portStatus(sw: SwitchTarget, port: string, opts?: DriverCallOptions): Promise<PortStatus>;
}

/** Parses a whole-number option; undefined when absent. Adds a violation when out of range. */
export function intOption(
  options: Readonly<Record<string, string>>,
  key: string,
  range: { min: number; max: number },
  violations?: FieldViolation[],
): number | undefined {
  const raw = options[key];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < range.min || n > range.max) {
    violations?.push({
      field: `switch.driver_options.${key}`,
      description: `must be a whole number from ${range.min} to ${range.max}`,
    });
    return undefined;
  }
  return n;
}

/** Violations for keys a driver does not know. */
export function unknownOptions(
  options: Readonly<Record<string, string>>,
  known: readonly string[],
  driver: string,
): FieldViolation[] {
  return Object.keys(options)
    .filter((k) => !known.includes(k))
    .map((k) => ({
      field: `switch.driver_options.${k}`,
      description: `is not an option of the ${driver} driver (${known.join(', ') || 'it has none'})`,
    }));
}
