import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BmcAuthError,
  BmcBusyError,
  BmcCommandError,
  type BmcError,
  BmcUnreachableError,
  BmcUnsupportedError,
} from './errors.ts';
import { runTool, type ToolOutput } from './exec.ts';
import {
  type BmcTarget,
  type BootDevice,
  type BootDeviceSetting,
  bmcKey,
  type CallOptions,
  type PowerCommand,
  type PowerDriver,
  type PowerState,
} from './power-driver.ts';

const DRIVER = 'freeipmi';
const KILL_SLACK_MS = 2_000;
/** FreeIPMI's own retransmission interval: its default, capped so short timeouts still retransmit. */
const RETRANSMISSION_MS = 400;

const COMMANDS: Record<PowerCommand, string> = {
  on: '--on',
  off: '--off',
  'soft-off': '--soft',
  reset: '--reset',
  cycle: '--cycle',
};

const BOOT_DEVICES: Record<BootDevice, string> = { pxe: 'PXE', disk: 'HARD-DRIVE' };

/**
 * FreeIPMI: `ipmipower` for power, `ipmi-chassis-config` for boot flags
 * (`ipmi-chassis --set-boot-flags` in 1.6 ignores the device). The password
 * goes in a 0600 FreeIPMI configuration file (`--config-file`) that exists
 * only while the tool runs, never in argv; the file also keeps the host's
 * /etc/freeipmi/freeipmi.conf out of the way.
 */
export class FreeipmiDriver implements PowerDriver {
  readonly name = DRIVER;
  readonly #parent: string;

  /** `secretsParent`: where each command's private 0700 directory is made. @default the system temp dir */
  constructor(opts: { secretsParent?: string } = {}) {
    this.#parent = opts.secretsParent ?? tmpdir();
  }

  async powerState(bmc: BmcTarget, opts: CallOptions = {}): Promise<PowerState> {
    const out = await this.#run(bmc, 'ipmipower', ['--stat'], opts);
    const state = parseIpmipowerLine(out.stdout);
    if (state !== 'on' && state !== 'off') throw unexpected(bmc, out);
    return state;
  }

  async power(bmc: BmcTarget, command: PowerCommand, opts: CallOptions = {}): Promise<void> {
    const out = await this.#run(bmc, 'ipmipower', [COMMANDS[command]], opts);
    if (parseIpmipowerLine(out.stdout) !== 'ok') throw unexpected(bmc, out);
  }

  async setBootDevice(
    bmc: BmcTarget,
    device: BootDevice,
    opts: CallOptions & { persistent: boolean; uefi: boolean },
  ): Promise<void> {
    const pairs = [
      `Chassis_Boot_Flags:Boot_Device=${BOOT_DEVICES[device]}`,
      `Chassis_Boot_Flags:Boot_Flags_Persistent=${opts.persistent ? 'Yes' : 'No'}`,
      `Chassis_Boot_Flags:BIOS_Boot_Type=${opts.uefi ? 'EFI' : 'PC-COMPATIBLE'}`,
    ];
    await this.#run(bmc, 'ipmi-chassis-config', ['--commit', ...pairs.flatMap((p) => ['-e', p])], opts);
  }

  async bootDevice(bmc: BmcTarget, opts: CallOptions = {}): Promise<BootDeviceSetting> {
    const out = await this.#run(bmc, 'ipmi-chassis-config', ['--checkout', '-S', 'Chassis_Boot_Flags'], opts);
    const setting = parseChassisBootFlags(out.stdout);
    if (!setting) throw unexpected(bmc, out);
    return setting;
  }

  async #run(bmc: BmcTarget, bin: string, command: string[], opts: CallOptions): Promise<ToolOutput> {
    // A directory of its own per command (mkdtemp: 0700), removed when the command ends.
    const dir = await mkdtemp(join(this.#parent, 'ingot-freeipmi-'));
    const file = join(dir, 'freeipmi.conf');
    try {
      await writeFile(file, freeipmiConfigFile(bmc.password.reveal()), { mode: 0o600, flag: 'wx' });
      const out = await runTool({
        bin,
        pkg: 'freeipmi-tools',
        args: [...freeipmiArgs(bmc, file), ...command],
        timeoutMs: bmc.options.timeoutMs + KILL_SLACK_MS,
        signal: opts.signal,
      });
      if (out.timedOut || out.exitCode !== 0) throw classifyFreeipmiFailure(bmc, out, bmc.options.timeoutMs);
      return out;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/** The connection arguments: no password, only the path of the file that holds it. */
export function freeipmiArgs(bmc: BmcTarget, configFile: string): string[] {
  const host = bmc.host.includes(':') ? `[${bmc.host}]` : bmc.host;
  const args = [
    '-h',
    `${host}:${bmc.port}`,
    '-D',
    'LAN_2_0',
    '-I',
    String(bmc.options.cipherSuite),
    '--config-file',
    configFile,
    '--session-timeout',
    String(bmc.options.timeoutMs),
    '--retransmission-timeout',
    String(Math.min(RETRANSMISSION_MS, Math.floor(bmc.options.timeoutMs / 2))),
  ];
  if (bmc.username !== '') args.push('-u', bmc.username);
  if (bmc.options.freeipmiWorkarounds.length > 0) args.push('-W', bmc.options.freeipmiWorkarounds.join(','));
  return args;
}

/**
 * A freeipmi.conf holding only the password. FreeIPMI's parser strips `#`
 * comments first, then reads quoted arguments with `\\`, `\#` and `\"`
 * escapes: quote the whole value and escape those three.
 */
export function freeipmiConfigFile(password: string): string {
  if (password === '') return '';
  if (/[\r\n\0]/.test(password)) {
    throw new Error('a BMC password with a line break or NUL cannot be given to FreeIPMI');
  }
  return `password "${password.replace(/[\\#"]/g, (c) => `\\${c}`)}"\n`;
}

/** `127.0.0.1: on` → `on`; the text after the host of ipmipower's (first) line. */
export function parseIpmipowerLine(stdout: string): string | undefined {
  const line = stdout.split('\n').find((l) => l.trim() !== '');
  if (!line) return undefined;
  const i = line.lastIndexOf(': ');
  return (i < 0 ? line : line.slice(i + 2)).trim().toLowerCase();
}

/** Parses `ipmi-chassis-config --checkout -S Chassis_Boot_Flags`. */
export function parseChassisBootFlags(stdout: string): BootDeviceSetting | undefined {
  const value = (key: string) =>
    new RegExp(`^\\s*${key}\\s+(\\S+)`, 'm').exec(stdout.replace(/^\s*#.*$/gm, ''))?.[1];
  const device = value('Boot_Device');
  if (device === undefined) return undefined;
  const map: Record<string, BootDeviceSetting['device']> = {
    PXE: 'pxe',
    'HARD-DRIVE': 'disk',
    'NO-OVERRIDE': 'none',
  };
  return {
    device: map[device.toUpperCase()] ?? 'other',
    persistent: value('Boot_Flags_Persistent')?.toLowerCase() === 'yes',
    uefi: value('BIOS_Boot_Type')?.toUpperCase() === 'EFI',
  };
}

const AUTH = [
  /password invalid/i,
  /username invalid/i,
  /k_g invalid/i,
  /privilege level (insufficient|cannot be obtained)/i,
  /authentication type unavailable/i,
  /password verification timeout/i,
];
const BUSY = [/BMC busy/i, /insufficient resources/i, /node busy/i];
const CIPHER = [/cipher suite id unavailable/i, /ipmi 2\.0 unavailable/i];
const UNSUPPORTED = [/not supported/i, /invalid command/i, /unsupported/i];
const UNREACHABLE = [
  /connection timeout/i,
  /session timeout/i,
  /hostname invalid/i,
  /could not resolve/i,
  /badly formatted packets/i,
  /message timeout/i,
];

/** Turns a failed FreeIPMI run into the matching BmcError, quoting the tool's line without its prefix. */
export function classifyFreeipmiFailure(
  bmc: Pick<BmcTarget, 'host' | 'port'>,
  out: ToolOutput,
  timeoutMs: number,
): BmcError {
  const fields = (bmcMessage: string) => ({ bmc: bmcKey(bmc), driver: DRIVER, bmcMessage });
  if (out.timedOut) return new BmcUnreachableError(fields(`no answer within ${timeoutMs} ms`));
  const lines = `${out.stdout}\n${out.stderr}`
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    // `127.0.0.1: password invalid`, `ipmi-chassis: …`, `/usr/sbin/ipmi-config: …`, `ipmi_ctx_open…: …`
    .map((l) => l.replace(/^[^\s:]+(?::\d+)?: /, '').replace(/^\[[^\]]+\](?::\d+)?: /, ''));
  const find = (patterns: RegExp[]) => lines.find((l) => patterns.some((p) => p.test(l)));
  let line = find(AUTH);
  if (line) return new BmcAuthError(fields(line));
  line = find(BUSY);
  if (line) return new BmcBusyError(fields(line));
  line = find(CIPHER);
  if (line) {
    return new BmcUnsupportedError({
      ...fields(line),
      hint: 'set bmc_options.cipher_suite to one the BMC offers, or try bmc_options.freeipmi_workarounds',
    });
  }
  line = find(UNREACHABLE);
  if (line) return new BmcUnreachableError(fields(line));
  line = find(UNSUPPORTED);
  if (line) return new BmcUnsupportedError(fields(line));
  return new BmcCommandError(fields(lines.at(-1) ?? `exited with code ${out.exitCode}`));
}

function unexpected(bmc: BmcTarget, out: ToolOutput): BmcError {
  return new BmcCommandError({
    bmc: bmcKey(bmc),
    driver: DRIVER,
    bmcMessage: `unexpected output: ${out.stdout.slice(0, 200)}`,
  });
}
