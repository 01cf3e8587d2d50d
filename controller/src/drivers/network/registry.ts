import type { FieldViolation } from '../../domain/errors.ts';
import { FailedPreconditionError } from '../../domain/errors.ts';
import { parseHostPort } from '../../domain/formats.ts';
import type { SecretBox } from '../../store/secrets.ts';
import { Secret } from '../power/power-driver.ts';
import { JuniperDriver } from './juniper/juniper-driver.ts';
import { LinuxBridgeDriver } from './linux-bridge.ts';
import type { NetworkDriver, SwitchTarget } from './network-driver.ts';
import { NoopDriver } from './noop.ts';

/** The network drivers by the name a switch's `driver` holds. */
export type NetworkDrivers = ReadonlyMap<string, NetworkDriver>;

export function createNetworkDrivers(): NetworkDrivers {
  const drivers: NetworkDriver[] = [new JuniperDriver(), new LinuxBridgeDriver(), new NoopDriver()];
  return new Map(drivers.map((d) => [d.name, d]));
}

const BUILT_IN = createNetworkDrivers();

/** Checks a switch's `driver_options` for its driver without touching the switch. */
export function driverOptionViolations(
  driver: string,
  options: Readonly<Record<string, string>>,
): FieldViolation[] {
  return BUILT_IN.get(driver)?.validateOptions(options) ?? [];
}

/** The columns of a switch row that drivers need (store/entities/switch.ts). */
export interface SwitchColumns {
  name: string;
  address: string;
  username: string;
  passwordSealed?: string | null;
  sshPrivateKeySealed?: string | null;
  hostKeyFingerprint: string;
  driverOptions?: Record<string, string> | null;
}

/** Unseals the credentials and resolves the address (`host`, `host:port`, `[v6]:port`). */
export function switchTargetOf(sw: SwitchColumns, secrets: SecretBox): SwitchTarget {
  const parsed = parseHostPort(sw.address);
  if (!parsed) {
    throw new FailedPreconditionError(
      'SWITCH_ADDRESS_INVALID',
      `switch ${sw.name} has address "${sw.address}", which is not host or host:port; update it`,
      { switch: sw.name },
    );
  }
  return {
    name: sw.name,
    host: parsed.host,
    ...(parsed.port === undefined ? {} : { port: parsed.port }),
    username: sw.username,
    password: new Secret(sw.passwordSealed ? secrets.open(sw.passwordSealed) : ''),
    privateKey: new Secret(sw.sshPrivateKeySealed ? secrets.open(sw.sshPrivateKeySealed) : ''),
    hostKeyFingerprint: sw.hostKeyFingerprint,
    options: sw.driverOptions ?? {},
  };
}

export function networkDriverFor(
  drivers: NetworkDrivers,
  sw: { name: string; driver: string },
): NetworkDriver {
  const driver = drivers.get(sw.driver);
  if (!driver) {
    throw new FailedPreconditionError(
      'NETWORK_DRIVER_UNKNOWN',
      `switch ${sw.name} uses driver "${sw.driver}", which this controller does not have (${[...drivers.keys()].join(', ')})`,
      { switch: sw.name, driver: sw.driver },
    );
  }
  return driver;
}
