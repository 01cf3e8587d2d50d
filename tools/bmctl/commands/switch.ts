import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { CreateSwitchRequest, type Switch } from '../../../build/gen/ingot/v1/inventory.ts';
import {
  collect,
  eitherOf,
  parseKeyValues,
  passwordArgument,
  passwordFile,
  type SecretSource,
} from '../args.ts';
import { listAll } from '../connection.ts';
import type { CommandContext } from '../context.ts';
import { BmctlError } from '../errors.ts';
import { formatMap, formatTime, toProtoJson, type View, yesNo } from '../output.ts';
import { portStatusView } from './network.ts';

export const switchView: View<Switch> = {
  columns: [
    { header: 'NAME', value: (s) => s.name },
    { header: 'ADDRESS', value: (s) => s.address },
    { header: 'DRIVER', value: (s) => s.driver },
    { header: 'USERNAME', value: (s) => s.username },
    { header: 'DESCRIPTION', value: (s) => s.description },
  ],
  fields: (s) => [
    ['id', s.id],
    ['name', s.name],
    ['address', s.address],
    ['username', s.username],
    ['has_password', yesNo(s.hasPassword)],
    ['driver', s.driver],
    ['description', s.description],
    ['host_key_fingerprint', s.hostKeyFingerprint],
    ['has_ssh_private_key', yesNo(s.hasSshPrivateKey)],
    ['driver_options', formatMap(s.driverOptions)],
    ['create_time', formatTime(s.createTime)],
    ['update_time', formatTime(s.updateTime)],
  ],
  json: (s) => toProtoJson(s, { omit: ['password', 'sshPrivateKey'] }),
};

/** The seed's `<ip> <user> <passwd> <driver> <description>`, each optional when its flag is used. */
export type SwitchAddArguments = [
  ip?: string,
  user?: string,
  password?: string,
  driver?: string,
  description?: string,
];

export interface SwitchAddOptions {
  name?: string;
  address?: string;
  username?: string;
  passwordFile?: string;
  driver?: string;
  description?: string;
  /** `key=value` driver settings, e.g. `syntax=port-mode`, `netns=lab0`. */
  driverOption?: string[];
  /** Private key for SSH key authentication. */
  sshKeyFile?: string;
}

/**
 * Builds CreateSwitch from the positional arguments and/or flags. Required
 * fields are left for the controller to check, so every missing one is
 * reported at once.
 */
export async function switchAddRequest(
  args: SwitchAddArguments,
  opts: SwitchAddOptions,
  secrets: SecretSource,
): Promise<CreateSwitchRequest> {
  const [ip, user, password, driver, description] = args;
  const fromStdinOrArgv = await passwordArgument(password, secrets);
  const fromFile = await passwordFile(opts.passwordFile, secrets);
  return CreateSwitchRequest.fromPartial({
    switch: {
      name: opts.name,
      address: eitherOf(ip, opts.address, { argument: '<ip>', flag: '--address' }),
      username: eitherOf(user, opts.username, { argument: '<user>', flag: '--username' }),
      password: eitherOf(fromStdinOrArgv, fromFile, { argument: '<passwd>', flag: '--password-file' }),
      driver: eitherOf(driver, opts.driver, { argument: '<driver>', flag: '--driver' }),
      description: eitherOf(description, opts.description, {
        argument: '<description>',
        flag: '--description',
      }),
      sshPrivateKey: await readKeyFile(opts.sshKeyFile, secrets),
      driverOptions: parseKeyValues(opts.driverOption ?? [], '--driver-option'),
    },
  });
}

export function registerSwitchCommands(program: Command, ctx: CommandContext): void {
  const noun = program.command('switch').description('Top-of-rack switches whose ports Ingot configures');

  noun
    .command('add')
    .description(
      'Register a switch. Give the fields positionally, as in `bmctl switch add 10.0.0.2 admin - juniper "rack 1"`, ' +
        'or with the flags. A password of `-` is read from stdin.',
    )
    .argument('[ip]', 'management address, `host` or `host:port` (NETCONF over SSH defaults to 830)')
    .argument('[user]', 'login user')
    .argument('[passwd]', 'login password, or `-` to read it from stdin')
    .argument('[driver]', '`juniper`, `linux-bridge` or `noop`')
    .argument('[description]', 'free text')
    .option('--name <name>', 'unique name (default: the host part of the address)')
    .option('--address <host[:port]>', 'instead of <ip>')
    .option('--username <user>', 'instead of <user>')
    .option('--password-file <path>', 'read the password from this file (`-`: stdin) instead of <passwd>')
    .option('--driver <driver>', 'instead of <driver>')
    .option('--description <text>', 'instead of <description>')
    .option(
      '--driver-option <key=value>',
      'driver setting, e.g. syntax=port-mode (juniper) or transport=local (linux-bridge); repeat for several',
      collect,
    )
    .option('--ssh-key-file <path>', 'SSH private key to log in with (instead of or besides the password)')
    .action(async (...params: unknown[]) => {
      const args = params.slice(0, 5) as SwitchAddArguments;
      const opts = params[5] as SwitchAddOptions;
      const request = await switchAddRequest(args, opts, ctx.secrets);
      const inventory = await ctx.inventory();
      ctx.printer().one(await inventory.call('createSwitch', request), switchView);
    });

  noun
    .command('list')
    .description('List switches')
    .option('--driver <driver>', 'only switches with this driver')
    .action(async (opts: { driver?: string }) => {
      const inventory = await ctx.inventory();
      const switches = await listAll(async (page) => {
        const res = await inventory.call('listSwitches', { ...page, driver: opts.driver ?? '' });
        return { items: res.switches, nextPageToken: res.nextPageToken };
      });
      ctx.printer().many(switches, switchView);
    });

  noun
    .command('show')
    .description('Show one switch')
    .argument('<id>', 'id or name')
    .action(async (id: string) => {
      const inventory = await ctx.inventory();
      ctx.printer().one(await inventory.call('getSwitch', { id }), switchView);
    });

  noun
    .command('delete')
    .description('Delete a switch')
    .argument('<id>', 'id or name')
    .action(async (id: string) => {
      const inventory = await ctx.inventory();
      await inventory.call('deleteSwitch', { id });
      ctx.printer().done(`switch ${id} deleted`);
    });

  noun
    .command('port-status')
    .description(
      'Read a port’s state from the switch itself (VLANs, bridge, link) and compare it with the network ' +
        'Ingot recorded for the node on it',
    )
    .argument('<switch>', 'switch id or name')
    .argument('<port>', 'port name, e.g. ge-0/0/3 or a Linux interface')
    .action(async (sw: string, port: string) => {
      const api = await ctx.inventory();
      ctx
        .printer()
        .one(await api.call('getPortStatus', { switch: sw, port }, { timeoutMs: 120_000 }), portStatusView);
    });
}

/** Switch ids to names, for tables that show a node's switch. */
export async function switchNamesById(ctx: CommandContext): Promise<Map<string, string>> {
  const inventory = await ctx.inventory();
  const switches = await listAll(async (page) => {
    const res = await inventory.call('listSwitches', { ...page, driver: '' });
    return { items: res.switches, nextPageToken: res.nextPageToken };
  });
  return new Map(switches.map((s) => [s.id, s.name]));
}

/** The private key named by `--ssh-key-file`; undefined without the flag. */
async function readKeyFile(path: string | undefined, secrets: SecretSource): Promise<string | undefined> {
  if (path === undefined) return undefined;
  try {
    return await readFile(resolve(secrets.cwd, path), 'utf8');
  } catch (err) {
    throw new BmctlError(`cannot read the SSH key file ${path}: ${(err as Error).message}`, { cause: err });
  }
}
