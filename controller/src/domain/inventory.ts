import { parseBmcOptions } from '../drivers/power/bmc-options.ts';
import { bool, type FieldSpec, normalized, oneOf, positiveInt, stringMap, text } from './fields.ts';
import {
  BMC_ADDRESS_HINT,
  formatHostPort,
  HOST_PORT_HINT,
  IP_HINT,
  isName,
  MAC_HINT,
  NAME_HINT,
  normalizeBmcAddress,
  normalizeIp,
  normalizeMac,
  parseHostPort,
} from './formats.ts';
import { isDiskPath } from './tasks.ts';

/** The switch drivers an operator may choose. */
export const SWITCH_DRIVERS = ['juniper', 'linux-bridge', 'noop'] as const;
/** The power drivers an operator may choose; the first is the default. */
export const POWER_DRIVERS = ['ipmitool', 'freeipmi'] as const;

const name = (v: unknown): unknown => {
  const s = typeof v === 'string' ? v.trim() : '';
  return s === '' || isName(s) ? s : { invalid: NAME_HINT };
};
const hostPort = normalized((s) => {
  const parsed = parseHostPort(s);
  return parsed && formatHostPort(parsed);
}, HOST_PORT_HINT);
const secret = (v: unknown): unknown => {
  const s = typeof v === 'string' ? v : '';
  return s.length > 1024 ? { invalid: 'must be at most 1024 characters' } : s;
};
const ref = text(64);
const sshKey = (v: unknown): unknown => {
  const s = typeof v === 'string' ? v.trim() : '';
  if (s.length > 16_384) return { invalid: 'must be at most 16384 characters' };
  return s === '' || /^-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(s)
    ? s && `${s}\n`
    : { invalid: 'must be an OpenSSH or PEM private key (-----BEGIN … PRIVATE KEY-----)' };
};

const MAX_CPUS = 4096;
const MAX_RAM_MB = 64 * 1024 * 1024;
const MAX_DISK_GB = 1024 * 1024;

export const SWITCH_FIELDS: readonly FieldSpec[] = [
  { name: 'name', key: 'name', parse: name },
  { name: 'address', key: 'address', required: true, parse: hostPort },
  { name: 'username', key: 'username', parse: text(128) },
  { name: 'password', key: 'password', parse: secret },
  { name: 'driver', key: 'driver', required: true, parse: oneOf(SWITCH_DRIVERS) },
  { name: 'description', key: 'description', parse: text(1024) },
  { name: 'host_key_fingerprint', key: 'hostKeyFingerprint', parse: text(128) },
  { name: 'ssh_private_key', key: 'sshPrivateKey', parse: sshKey },
  { name: 'driver_options', key: 'driverOptions', parse: stringMap },
];

/** How a disk path must look, where one is given. */
export const DISK_HINT = 'must be a block device path such as /dev/sda';

export const NODE_FIELDS: readonly FieldSpec[] = [
  { name: 'name', key: 'name', parse: name },
  { name: 'ip', key: 'ip', required: true, parse: normalized(normalizeIp, IP_HINT) },
  { name: 'mac', key: 'mac', required: true, parse: normalized(normalizeMac, MAC_HINT) },
  { name: 'cpus', key: 'cpus', required: true, parse: positiveInt(MAX_CPUS, 'CPUs') },
  { name: 'ram_mb', key: 'ramMb', required: true, parse: positiveInt(MAX_RAM_MB, 'MiB') },
  { name: 'disk_gb', key: 'diskGb', required: true, parse: positiveInt(MAX_DISK_GB, 'GiB') },
  {
    name: 'bmc_address',
    key: 'bmcAddress',
    required: true,
    parse: normalized(normalizeBmcAddress, BMC_ADDRESS_HINT),
  },
  { name: 'bmc_username', key: 'bmcUsername', parse: text(128) },
  { name: 'bmc_password', key: 'bmcPassword', parse: secret },
  { name: 'power_driver', key: 'powerDriver', parse: (v) => oneOf(POWER_DRIVERS)(v || POWER_DRIVERS[0]) },
  { name: 'switch_id', key: 'switchId', parse: ref },
  { name: 'switch_port', key: 'switchPort', parse: text(64) },
  { name: 'maintenance', key: 'maintenance', parse: bool },
  { name: 'maintenance_reason', key: 'maintenanceReason', parse: text(1024) },
  { name: 'bmc_options', key: 'bmcOptions', parse: parseBmcOptions },
  {
    name: 'root_disk',
    key: 'rootDisk',
    parse: normalized((s) => (isDiskPath(s) ? s : undefined), DISK_HINT),
  },
];

export const PROJECT_FIELDS: readonly FieldSpec[] = [
  { name: 'name', key: 'name', required: true, parse: name },
  { name: 'isolated', key: 'isolated', parse: bool },
  { name: 'description', key: 'description', parse: text(1024) },
];

export const FLAVOR_FIELDS: readonly FieldSpec[] = [
  { name: 'name', key: 'name', required: true, parse: name },
  { name: 'vcpus', key: 'vcpus', required: true, updatable: false, parse: positiveInt(MAX_CPUS, 'CPUs') },
  { name: 'ram_mb', key: 'ramMb', required: true, updatable: false, parse: positiveInt(MAX_RAM_MB, 'MiB') },
  {
    name: 'disk_gb',
    key: 'diskGb',
    required: true,
    updatable: false,
    parse: positiveInt(MAX_DISK_GB, 'GiB'),
  },
  { name: 'extra_specs', key: 'extraSpecs', parse: stringMap },
];

export const AGGREGATE_FIELDS: readonly FieldSpec[] = [
  { name: 'name', key: 'name', required: true, parse: name },
  { name: 'availability_zone', key: 'availabilityZone', parse: text(255) },
];

export const HOST_FIELDS: readonly FieldSpec[] = [
  { name: 'name', key: 'name', required: true, parse: name },
  { name: 'vcpus', key: 'vcpus', required: true, parse: positiveInt(MAX_CPUS, 'CPUs') },
  { name: 'ram_mb', key: 'ramMb', required: true, parse: positiveInt(MAX_RAM_MB, 'MiB') },
  { name: 'disk_gb', key: 'diskGb', required: true, parse: positiveInt(MAX_DISK_GB, 'GiB') },
];

/** Default node name: stable, unique because the MAC is. */
export function defaultNodeName(mac: string): string {
  return `node-${mac.replace(/:/g, '')}`;
}

/** Default switch name: the host part of its address. */
export function defaultSwitchName(address: string): string {
  const name = (parseHostPort(address)?.host ?? address)
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '');
  return name || 'switch';
}
