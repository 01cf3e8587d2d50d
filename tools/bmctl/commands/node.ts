import { Argument, type Command, Option } from 'commander';
import {
  type BmcOptions,
  CreateNodeRequest,
  ListNodesRequest,
  NetbootState,
  type Node,
  netbootStateToJSON,
  PowerState,
  type ProvisionState,
  powerStateToJSON,
  provisionStateToJSON,
  UpdateNodeRequest,
} from '../../../build/gen/ingot/v1/inventory.ts';
import {
  BootDevice,
  type BootDeviceSetting,
  bootDeviceToJSON,
  type NodePower,
  PowerAction,
} from '../../../build/gen/ingot/v1/power.ts';
import {
  collect,
  eitherOf,
  parseProvisionState,
  parseWholeNumber,
  passwordArgument,
  passwordFile,
  provisionStateName,
  type SecretSource,
} from '../args.ts';
import { listAll } from '../connection.ts';
import type { CommandContext } from '../context.ts';
import { UsageError } from '../errors.ts';
import { formatTime, toProtoJson, type View, yesNo } from '../output.ts';
import { AgentServices, parseDuration } from '../services.ts';
import { describeMove, moveView } from './network.ts';
import { switchNamesById } from './switch.ts';

export const POWER_DRIVERS = ['ipmitool', 'freeipmi'] as const;
/** Deadline of a power change: the controller waits for the chassis (the node's power_wait_ms, 60 s by default). */
const POWER_CALL_TIMEOUT_MS = 150_000;
/** Deadline of a port move: a switch commit with retries (EX commits take up to a minute). */
const NETWORK_CALL_TIMEOUT_MS = 300_000;

/**
 * How nodes print. `switchNames` maps switch ids to names so tables show
 * `tor1` rather than an id; ids without a name print as they are.
 */
export function nodeView(switchNames: ReadonlyMap<string, string> = new Map()): View<Node> {
  const switchOf = (n: Node) => switchNames.get(n.switchId) ?? n.switchId;
  return {
    columns: [
      { header: 'NAME', value: (n) => n.name },
      { header: 'MAC', value: (n) => n.mac },
      { header: 'IP', value: (n) => n.ip },
      { header: 'CPUS', value: (n) => String(n.cpus) },
      { header: 'RAM_MB', value: (n) => String(n.ramMb) },
      { header: 'DISK_GB', value: (n) => String(n.diskGb) },
      { header: 'STATE', value: (n) => provisionStateName(n.provisionState) },
      { header: 'MAINT', value: (n) => yesNo(n.maintenance) },
      { header: 'SWITCH', value: switchOf },
      { header: 'PORT', value: (n) => n.switchPort },
      { header: 'POWER_DRIVER', value: (n) => n.powerDriver },
    ],
    fields: (n) => [
      ['id', n.id],
      ['name', n.name],
      ['ip', n.ip],
      ['mac', n.mac],
      ['cpus', String(n.cpus)],
      ['ram_mb', String(n.ramMb)],
      ['disk_gb', String(n.diskGb)],
      ['root_disk', n.rootDisk],
      ['bmc_address', n.bmcAddress],
      ['bmc_username', n.bmcUsername],
      ['has_bmc_password', yesNo(n.hasBmcPassword)],
      ['power_driver', n.powerDriver],
      ['switch', switchOf(n)],
      ['switch_id', n.switchId],
      ['switch_port', n.switchPort],
      ['provision_state', provisionStateName(n.provisionState)],
      ['maintenance', yesNo(n.maintenance)],
      ['maintenance_reason', n.maintenanceReason],
      ['last_error', n.lastError],
      ['instance_id', n.instanceId],
      ['create_time', formatTime(n.createTime)],
      ['update_time', formatTime(n.updateTime)],
      ['power_state', powerStateName(n.powerState)],
      ['power_state_time', formatTime(n.powerStateTime)],
      ['expected_power', powerStateName(n.expectedPowerState)],
      ['power_drift_time', formatTime(n.powerDriftTime)],
      ['power_error', n.powerError],
      ['bmc_cipher_suite', n.bmcOptions ? String(n.bmcOptions.cipherSuite) : ''],
      ['bmc_workarounds', n.bmcOptions?.freeipmiWorkarounds.join(',') ?? ''],
      ['bmc_timeout_ms', n.bmcOptions ? String(n.bmcOptions.timeoutMs) : ''],
      ['bmc_retries', String(n.bmcOptions?.retries ?? '')],
      ['power_wait_ms', n.bmcOptions ? String(n.bmcOptions.powerWaitMs) : ''],
      ['network_id', n.networkId],
      ['target_network_id', n.targetNetworkId],
      ['network_error', n.networkError],
      ['network_time', formatTime(n.networkTime)],
      ['netboot_state', netbootStateName(n.netbootState)],
      ['netboot_time', formatTime(n.netbootTime)],
    ],
    json: (n) => {
      const json = toProtoJson(n, {
        omit: ['bmcPassword'],
        enums: {
          provisionState: (v) => provisionStateToJSON(v as ProvisionState),
          powerState: (v) => powerStateToJSON(v as PowerState),
          expectedPowerState: (v) => powerStateToJSON(v as PowerState),
          netbootState: (v) => netbootStateToJSON(v as NetbootState),
        },
      });
      if (n.bmcOptions) json.bmc_options = toProtoJson(n.bmcOptions);
      return json;
    },
  };
}

/** `POWER_STATE_ON` → `on`; unknown → ``. */
function powerStateName(state: PowerState): string {
  if (state === PowerState.POWER_STATE_ON) return 'on';
  if (state === PowerState.POWER_STATE_OFF) return 'off';
  return '';
}

/** How power results print. */
export const nodePowerView: View<NodePower> = {
  columns: [
    { header: 'NODE', value: (p) => p.nodeName },
    { header: 'POWER', value: (p) => powerStateName(p.powerState) },
  ],
  fields: (p) => [
    ['node', p.nodeName],
    ['power_state', powerStateName(p.powerState)],
    ['observe_time', formatTime(p.observeTime)],
    ['commands_sent', p.commandsSent.join(', ')],
    ['forced_off', yesNo(p.forcedOff)],
  ],
  json: (p) => toProtoJson(p, { enums: { powerState: (v) => powerStateToJSON(v as PowerState) } }),
};

const BOOT_DEVICE_NAMES: Record<number, string> = {
  [BootDevice.BOOT_DEVICE_PXE]: 'pxe',
  [BootDevice.BOOT_DEVICE_DISK]: 'disk',
  [BootDevice.BOOT_DEVICE_NONE]: 'none',
  [BootDevice.BOOT_DEVICE_OTHER]: 'other',
};

export const bootDeviceView: View<BootDeviceSetting> = {
  columns: [{ header: 'DEVICE', value: (b) => BOOT_DEVICE_NAMES[b.device] ?? '' }],
  fields: (b) => [
    ['node', b.node],
    ['boot_device', BOOT_DEVICE_NAMES[b.device] ?? ''],
    ['persistent', yesNo(b.persistent)],
    ['uefi', yesNo(b.uefi)],
  ],
  json: (b) => toProtoJson(b, { enums: { device: (v) => bootDeviceToJSON(v as BootDevice) } }),
};

/** `bmctl node power <action>` → PowerService action; `status` reads instead. */
export const POWER_ACTIONS = {
  on: PowerAction.POWER_ACTION_ON,
  off: PowerAction.POWER_ACTION_OFF,
  'soft-off': PowerAction.POWER_ACTION_SOFT_OFF,
  reset: PowerAction.POWER_ACTION_RESET,
  cycle: PowerAction.POWER_ACTION_CYCLE,
} as const;

/** Flags that set a node's BMC options (`node add`, `node bmc-options`). */
export interface BmcOptionFlags {
  cipherSuite?: number;
  freeipmiWorkaround?: string[];
  bmcTimeoutMs?: number;
  bmcRetries?: number;
  powerWaitMs?: number;
}

/** The BmcOptions message from the flags; undefined when none was given. */
export function bmcOptionsFromFlags(opts: BmcOptionFlags): BmcOptions | undefined {
  if (
    opts.cipherSuite === undefined &&
    opts.freeipmiWorkaround === undefined &&
    opts.bmcTimeoutMs === undefined &&
    opts.bmcRetries === undefined &&
    opts.powerWaitMs === undefined
  ) {
    return undefined;
  }
  return {
    cipherSuite: opts.cipherSuite ?? 0,
    freeipmiWorkarounds: opts.freeipmiWorkaround ?? [],
    timeoutMs: opts.bmcTimeoutMs ?? 0,
    retries: opts.bmcRetries,
    powerWaitMs: opts.powerWaitMs ?? 0,
  };
}

function addBmcOptionFlags(command: Command): Command {
  return command
    .option('--cipher-suite <id>', 'IPMI 2.0 cipher suite (default 3)', parseWholeNumber)
    .option(
      '--freeipmi-workaround <flag>',
      'FreeIPMI workaround flag, e.g. opensesspriv; repeat for several',
      collect,
    )
    .option('--bmc-timeout-ms <ms>', 'how long one BMC command may take (default 10000)', parseWholeNumber)
    .option('--bmc-retries <n>', 'retries of an unreachable or busy BMC (default 2)', parseNonNegative)
    .option(
      '--power-wait-ms <ms>',
      'how long a power change may take to show (default 60000)',
      parseWholeNumber,
    );
}

function parseNonNegative(value: string): number {
  return value.trim() === '0' ? 0 : parseWholeNumber(value);
}

/** The seed's ten positional arguments, each optional when its flag is used instead. */
export type NodeAddArguments = [
  ip?: string,
  mac?: string,
  cpus?: number,
  ramMb?: number,
  diskGb?: number,
  bmcAddress?: string,
  bmcUsername?: string,
  bmcPassword?: string,
  switchId?: string,
  switchPort?: string,
];

export interface NodeAddOptions extends BmcOptionFlags {
  name?: string;
  powerDriver?: string;
  ip?: string;
  mac?: string;
  cpus?: number;
  ram?: number;
  disk?: number;
  bmcAddress?: string;
  bmcUsername?: string;
  bmcPasswordFile?: string;
  switch?: string;
  switchPort?: string;
  rootDisk?: string;
}

/**
 * Builds CreateNode from `<ip> <mac_addr> <cpus> <ram> <hdd> <ipmihost>
 * <ipmiuser> <ipmipass> <switchid> <switchport>` and/or the flags. The
 * controller validates and normalises every field (MAC form, address,
 * switch by id or name), so missing ones are reported together.
 */
export async function nodeAddRequest(
  args: NodeAddArguments,
  opts: NodeAddOptions,
  secrets: SecretSource,
): Promise<CreateNodeRequest> {
  const [ip, mac, cpus, ramMb, diskGb, bmcAddress, bmcUsername, bmcPassword, switchId, switchPort] = args;
  const fromStdinOrArgv = await passwordArgument(bmcPassword, secrets);
  const fromFile = await passwordFile(opts.bmcPasswordFile, secrets);
  return CreateNodeRequest.fromPartial({
    node: {
      name: opts.name,
      ip: eitherOf(ip, opts.ip, { argument: '<ip>', flag: '--ip' }),
      mac: eitherOf(mac, opts.mac, { argument: '<mac_addr>', flag: '--mac' }),
      cpus: eitherOf(cpus, opts.cpus, { argument: '<cpus>', flag: '--cpus' }),
      ramMb: eitherOf(ramMb, opts.ram, { argument: '<ram>', flag: '--ram' }),
      diskGb: eitherOf(diskGb, opts.disk, { argument: '<hdd>', flag: '--disk' }),
      bmcAddress: eitherOf(bmcAddress, opts.bmcAddress, { argument: '<ipmihost>', flag: '--bmc-address' }),
      bmcUsername: eitherOf(bmcUsername, opts.bmcUsername, {
        argument: '<ipmiuser>',
        flag: '--bmc-username',
      }),
      bmcPassword: eitherOf(fromStdinOrArgv, fromFile, {
        argument: '<ipmipass>',
        flag: '--bmc-password-file',
      }),
      powerDriver: opts.powerDriver,
      switchId: eitherOf(switchId, opts.switch, { argument: '<switchid>', flag: '--switch' }),
      switchPort: eitherOf(switchPort, opts.switchPort, { argument: '<switchport>', flag: '--switch-port' }),
      bmcOptions: bmcOptionsFromFlags(opts),
      rootDisk: opts.rootDisk,
    },
  });
}

export interface NodeListOptions {
  switch?: string;
  state?: ProvisionState;
  maintenance?: 'true' | 'false';
}

/** One page of ListNodes with the operator's filters. */
export function nodeListRequest(
  opts: NodeListOptions,
  page: { pageSize: number; pageToken: string },
): ListNodesRequest {
  return ListNodesRequest.fromPartial({
    ...page,
    switchId: opts.switch,
    provisionState: opts.state,
    maintenance: opts.maintenance === undefined ? undefined : opts.maintenance === 'true',
  });
}

/** `bmctl node update` flags; each one given is set, the others are left alone. */
export interface NodeUpdateOptions {
  rootDisk?: string;
}

/** UpdateNode with a field mask of the settings given; UsageError when none is. */
export function nodeUpdateRequest(id: string, opts: NodeUpdateOptions): UpdateNodeRequest {
  if (opts.rootDisk === undefined) throw new UsageError('give at least one setting, e.g. --root-disk');
  return UpdateNodeRequest.fromPartial({ node: { id, rootDisk: opts.rootDisk }, updateMask: ['root_disk'] });
}

/** UpdateNode that sets only the maintenance flag and reason; `off` clears the reason. */
export function nodeMaintenanceRequest(
  id: string,
  mode: 'on' | 'off',
  opts: { reason?: string },
): UpdateNodeRequest {
  if (mode === 'off' && opts.reason !== undefined) {
    throw new UsageError('--reason only goes with `on`; turning maintenance off clears the reason');
  }
  return UpdateNodeRequest.fromPartial({
    node: { id, maintenance: mode === 'on', maintenanceReason: mode === 'on' ? (opts.reason ?? '') : '' },
    updateMask: ['maintenance', 'maintenance_reason'],
  });
}

export function registerNodeCommands(program: Command, ctx: CommandContext): void {
  const noun = program.command('node').description('Bare-metal servers and their BMCs');
  registerAgentTokenCommand(noun, ctx);

  /** Switch names for tables; JSON prints the ids and needs no extra call. */
  const viewFor = async (): Promise<View<Node>> =>
    nodeView(ctx.printer().format === 'table' ? await switchNamesById(ctx) : undefined);

  const add = noun
    .command('add')
    .description(
      'Register a node. Give the fields positionally, as in ' +
        '`bmctl node add 10.0.0.5 52:54:00:12:34:56 8 16384 100 10.0.1.5 admin - tor1 ge-0/0/5`, ' +
        'or with the flags. A password of `-` is read from stdin.',
    )
    .argument('[ip]', 'address of the node on its network')
    .argument('[mac_addr]', 'MAC of the first NIC, e.g. 52:54:00:12:34:56')
    .addArgument(new Argument('[cpus]', 'CPU count').argParser(parseWholeNumber))
    .addArgument(new Argument('[ram]', 'memory in MB').argParser(parseWholeNumber))
    .addArgument(new Argument('[hdd]', 'disk in GB').argParser(parseWholeNumber))
    .argument('[ipmihost]', 'BMC address: host, host:port or ipmi://host:port (port 623 by default)')
    .argument('[ipmiuser]', 'BMC user')
    .argument('[ipmipass]', 'BMC password, or `-` to read it from stdin')
    .argument('[switchid]', 'switch (id or name) the first NIC is cabled to')
    .argument('[switchport]', 'port on that switch, e.g. ge-0/0/5')
    .option('--name <name>', 'unique name (default: node- and the MAC digits)')
    .addOption(
      new Option('--power-driver <driver>', 'how to reach the BMC (default: ipmitool)').choices(
        POWER_DRIVERS,
      ),
    )
    .option('--ip <address>', 'instead of <ip>')
    .option('--mac <mac>', 'instead of <mac_addr>')
    .option('--cpus <n>', 'instead of <cpus>', parseWholeNumber)
    .option('--ram <mb>', 'instead of <ram>, in MB', parseWholeNumber)
    .option('--disk <gb>', 'instead of <hdd>, in GB', parseWholeNumber)
    .option('--bmc-address <address>', 'instead of <ipmihost>')
    .option('--bmc-username <user>', 'instead of <ipmiuser>')
    .option(
      '--bmc-password-file <path>',
      'read the BMC password from this file (`-`: stdin) instead of <ipmipass>',
    )
    .option('--switch <switch>', 'instead of <switchid>')
    .option('--switch-port <port>', 'instead of <switchport>')
    .option('--root-disk <path>', 'block device instances are deployed to (default /dev/sda)');
  addBmcOptionFlags(add).action(async (...params: unknown[]) => {
    const request = await nodeAddRequest(
      params.slice(0, 10) as NodeAddArguments,
      params[10] as NodeAddOptions,
      ctx.secrets,
    );
    const inventory = await ctx.inventory();
    const node = await inventory.call('createNode', request);
    ctx.printer().one(node, await viewFor());
  });

  noun
    .command('list')
    .description('List nodes')
    .option('--switch <switch>', 'only nodes cabled to this switch (id or name)')
    .option('--state <state>', 'only nodes in this provision state, e.g. available', parseProvisionState)
    .addOption(
      new Option('--maintenance <bool>', 'only nodes with maintenance on (true) or off (false)').choices([
        'true',
        'false',
      ]),
    )
    .action(async (opts: NodeListOptions) => {
      const inventory = await ctx.inventory();
      const nodes = await listAll(async (page) => {
        const res = await inventory.call('listNodes', nodeListRequest(opts, page));
        return { items: res.nodes, nextPageToken: res.nextPageToken };
      });
      ctx.printer().many(nodes, await viewFor());
    });

  noun
    .command('show')
    .description('Show one node')
    .argument('<id>', 'id or name')
    .action(async (id: string) => {
      const inventory = await ctx.inventory();
      const node = await inventory.call('getNode', { id });
      ctx.printer().one(node, await viewFor());
    });

  noun
    .command('delete')
    .description('Delete a node')
    .argument('<id>', 'id or name')
    .action(async (id: string) => {
      const inventory = await ctx.inventory();
      await inventory.call('deleteNode', { id });
      ctx.printer().done(`node ${id} deleted`);
    });

  noun
    .command('update')
    .description(
      'Change a node’s settings; those not given keep their value (see also maintenance, bmc-options)',
    )
    .argument('<id>', 'id or name')
    .option('--root-disk <path>', 'block device instances are deployed to, e.g. /dev/nvme0n1')
    .action(async (id: string, opts: NodeUpdateOptions) => {
      const request = nodeUpdateRequest(id, opts);
      const inventory = await ctx.inventory();
      const node = await inventory.call('updateNode', request);
      ctx.printer().one(node, await viewFor());
    });

  noun
    .command('maintenance')
    .description('Turn a node’s maintenance flag on or off; the scheduler skips nodes in maintenance')
    .argument('<id>', 'id or name')
    .addArgument(new Argument('<mode>', 'on or off').choices(['on', 'off']))
    .option('--reason <text>', 'why, shown in `node show` (only with on)')
    .action(async (id: string, mode: 'on' | 'off', opts: { reason?: string }) => {
      const request = nodeMaintenanceRequest(id, mode, opts);
      const inventory = await ctx.inventory();
      const node = await inventory.call('updateNode', request);
      ctx.printer().one(node, await viewFor());
    });

  noun
    .command('network')
    .description(
      'Move a node’s switch port to a network by hand (maintenance, debugging); returns once the switch ' +
        'has the change committed and read back. A port already there is left alone.',
    )
    .argument('<node>', 'id or name')
    .argument('<network>', 'network id or name')
    .action(async (node: string, network: string) => {
      const api = await ctx.inventory();
      const moved = await api.call(
        'setNodeNetwork',
        { node, network },
        { timeoutMs: NETWORK_CALL_TIMEOUT_MS },
      );
      const printer = ctx.printer();
      if (printer.format === 'json') printer.one(moved, moveView);
      else
        printer.done(describeMove(moved, (await switchNamesById(ctx)).get(moved.switchId) ?? moved.switchId));
    });

  noun
    .command('power')
    .description(
      'Read or change a node’s power through its BMC. Changes return once the BMC reports the new state; ' +
        '`soft-off` presses the ACPI power button and cuts power if the OS has not shut down in time.',
    )
    .addArgument(
      new Argument('<action>', 'status, on, off, soft-off, reset or cycle').choices([
        'status',
        ...Object.keys(POWER_ACTIONS),
      ]),
    )
    .argument('<node>', 'id or name')
    .option(
      '--soft-timeout <seconds>',
      'soft-off only: how long the OS gets (default: the node’s power_wait_ms)',
      parseWholeNumber,
    )
    .action(
      async (action: 'status' | keyof typeof POWER_ACTIONS, node: string, opts: { softTimeout?: number }) => {
        if (opts.softTimeout !== undefined && action !== 'soft-off') {
          throw new UsageError('--soft-timeout only goes with soft-off');
        }
        const inventory = await ctx.inventory();
        const result =
          action === 'status'
            ? await inventory.call('getPowerState', { node })
            : await inventory.call(
                'setPower',
                { node, action: POWER_ACTIONS[action], softTimeoutMs: (opts.softTimeout ?? 0) * 1000 },
                { timeoutMs: POWER_CALL_TIMEOUT_MS + (opts.softTimeout ?? 0) * 1000 },
              );
        ctx.printer().one(result, nodePowerView);
      },
    );

  noun
    .command('boot-device')
    .description(
      'Show a node’s boot device, or set it (pxe or disk) for the next boot, or every boot with --persistent',
    )
    .argument('<node>', 'id or name')
    .addArgument(
      new Argument('[device]', 'pxe or disk; without it, shows the current one').choices(['pxe', 'disk']),
    )
    .option('--persistent', 'for every boot, not only the next one')
    .option('--uefi', 'UEFI boot rather than legacy BIOS')
    .action(
      async (
        node: string,
        device: 'pxe' | 'disk' | undefined,
        opts: { persistent?: boolean; uefi?: boolean },
      ) => {
        if (device === undefined && (opts.persistent || opts.uefi)) {
          throw new UsageError('--persistent and --uefi go with a device (pxe or disk)');
        }
        const inventory = await ctx.inventory();
        const setting =
          device === undefined
            ? await inventory.call('getBootDevice', { node })
            : await inventory.call('setBootDevice', {
                node,
                device: device === 'pxe' ? BootDevice.BOOT_DEVICE_PXE : BootDevice.BOOT_DEVICE_DISK,
                persistent: opts.persistent ?? false,
                uefi: opts.uefi ?? false,
              });
        ctx.printer().one(setting, bootDeviceView);
      },
    );

  addBmcOptionFlags(
    noun
      .command('bmc-options')
      .description(
        'Change how Ingot talks to a node’s BMC; settings not given keep their value. ' +
          'With --reset, back to the defaults.',
      )
      .argument('<node>', 'id or name')
      .option('--reset', 'forget every override'),
  ).action(async (id: string, opts: BmcOptionFlags & { reset?: boolean }) => {
    const inventory = await ctx.inventory();
    const current = (await inventory.call('getNode', { id })).bmcOptions;
    const given = bmcOptionsFromFlags(opts);
    if (!opts.reset && given === undefined) throw new UsageError('give at least one setting, or --reset');
    const merged: BmcOptions | undefined = opts.reset
      ? undefined
      : {
          cipherSuite: opts.cipherSuite ?? current?.cipherSuite ?? 0,
          freeipmiWorkarounds: opts.freeipmiWorkaround ?? current?.freeipmiWorkarounds ?? [],
          timeoutMs: opts.bmcTimeoutMs ?? current?.timeoutMs ?? 0,
          retries: opts.bmcRetries ?? current?.retries,
          powerWaitMs: opts.powerWaitMs ?? current?.powerWaitMs ?? 0,
        };
    const node = await inventory.call(
      'updateNode',
      UpdateNodeRequest.fromPartial({ node: { id, bmcOptions: merged }, updateMask: ['bmc_options'] }),
    );
    ctx.printer().one(node, await viewFor());
  });
}

/** `NETBOOT_STATE_BOOT_FILE_FETCHED` → `boot-file-fetched`; unspecified (no entry) → ''. */
function netbootStateName(state: NetbootState): string {
  if (state === NetbootState.NETBOOT_STATE_UNSPECIFIED) return '';
  return netbootStateToJSON(state)
    .replace(/^NETBOOT_STATE_/, '')
    .toLowerCase()
    .replace(/_/g, '-');
}

/**
 * `bmctl node agent-token <node> [--ttl 24h]`: mints the node's agent token
 * (replacing the previous one) for `ingot-agent --token` or the bootstrap
 * image's kernel command line. Printed once; only its hash is kept.
 */
function registerAgentTokenCommand(noun: Command, ctx: CommandContext): void {
  noun
    .command('agent-token')
    .description('Mint the node’s agent token, replacing the previous one; it is printed once')
    .argument('<node>', 'id or name')
    .option('--ttl <duration>', 'how long it works: 90s, 10m, 2h, 7d (at most 30d)', '24h')
    .action(async (node: string, opts: { ttl: string }) => {
      const ttl = parseDuration(opts.ttl);
      if (!ttl) throw new UsageError(`--ttl ${opts.ttl}: expected a duration like 10m, 24h or 7d`);
      const services = new AgentServices(await ctx.connection());
      try {
        const res = await services.call<object, { token: string; nodeId: string; expireTime: Date }>(
          services.agents,
          'createAgentToken',
          { node, ttl },
        );
        ctx.printer().report({
          text: () => `${res.token}\n`,
          json: () => ({ token: res.token, node_id: res.nodeId, expire_time: res.expireTime.toISOString() }),
        });
      } finally {
        services.close();
      }
    });
}
