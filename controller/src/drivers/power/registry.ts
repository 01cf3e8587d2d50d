import { FailedPreconditionError } from '../../domain/errors.ts';
import { parseHostPort } from '../../domain/formats.ts';
import type { SecretBox } from '../../store/secrets.ts';
import { resolveBmcOptions, type StoredBmcOptions } from './bmc-options.ts';
import { FreeipmiDriver } from './freeipmi.ts';
import { IpmitoolDriver } from './ipmitool.ts';
import { type BmcTarget, type PowerDriver, Secret } from './power-driver.ts';

/** IPMI's RMCP port. */
export const IPMI_PORT = 623;

/** The power drivers by the name a node's `power_driver` holds. */
export type PowerDrivers = ReadonlyMap<string, PowerDriver>;

export function createPowerDrivers(): PowerDrivers {
  const drivers: PowerDriver[] = [new IpmitoolDriver(), new FreeipmiDriver()];
  return new Map(drivers.map((d) => [d.name, d]));
}

/** What the power layer needs of a node; built from the row by `powerNodeOf`. */
export interface PowerNode {
  /** The node's name, for messages and logs. */
  name: string;
  driver: string;
  bmc: BmcTarget;
}

/** The columns of a node row that power needs (store/entities/node.ts). */
export interface NodeBmcColumns {
  name: string;
  bmcAddress: string;
  bmcUsername: string;
  bmcPasswordSealed?: string | null;
  powerDriver: string;
  bmcOptions?: StoredBmcOptions | null;
}

/** Unseals the password and resolves the address (`host`, `host:port`, `[v6]:port`) and options. */
export function powerNodeOf(node: NodeBmcColumns, secrets: SecretBox): PowerNode {
  const parsed = parseHostPort(node.bmcAddress);
  if (!parsed) {
    throw new FailedPreconditionError(
      'BMC_ADDRESS_INVALID',
      `node ${node.name} has BMC address "${node.bmcAddress}", which is not host or host:port; update it`,
      { node: node.name },
    );
  }
  return {
    name: node.name,
    driver: node.powerDriver,
    bmc: {
      host: parsed.host,
      port: parsed.port ?? IPMI_PORT,
      username: node.bmcUsername,
      password: new Secret(node.bmcPasswordSealed ? secrets.open(node.bmcPasswordSealed) : ''),
      options: resolveBmcOptions(node.bmcOptions),
    },
  };
}

export function driverFor(drivers: PowerDrivers, node: Pick<PowerNode, 'name' | 'driver'>): PowerDriver {
  const driver = drivers.get(node.driver);
  if (!driver) {
    throw new FailedPreconditionError(
      'POWER_DRIVER_UNKNOWN',
      `node ${node.name} uses power driver "${node.driver}", which this controller does not have (${[...drivers.keys()].join(', ')})`,
      { node: node.name, driver: node.driver },
    );
  }
  return driver;
}
