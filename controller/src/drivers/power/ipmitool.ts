import type { BmcOptions } from './bmc-options.ts';
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

const DRIVER = 'ipmitool';
/** Extra time the tool gets beyond its own retransmission budget before it is killed. */
const KILL_SLACK_MS = 2_000;

const COMMANDS: Record<PowerCommand, string> = {
  on: 'on',
  off: 'off',
  'soft-off': 'soft',
  reset: 'reset',
  cycle: 'cycle',
};

/**
 * ipmitool over IPMI 2.0 (`-I lanplus`). The password travels in the
 * IPMI_PASSWORD environment variable (`-E`), never in argv. `-v` makes
 * ipmitool say why a session failed (RAKP errors), which is how an
 * authentication failure is told apart from an unreachable BMC.
 */
export class IpmitoolDriver implements PowerDriver {
  readonly name = DRIVER;

  async powerState(bmc: BmcTarget, opts: CallOptions = {}): Promise<PowerState> {
    const out = await this.#run(bmc, ['chassis', 'power', 'status'], opts);
    const state = parseIpmitoolPowerState(out.stdout);
    if (!state) throw unexpected(bmc, out);
    return state;
  }

  async power(bmc: BmcTarget, command: PowerCommand, opts: CallOptions = {}): Promise<void> {
    await this.#run(bmc, ['chassis', 'power', COMMANDS[command]], opts);
  }

  async setBootDevice(
    bmc: BmcTarget,
    device: BootDevice,
    opts: CallOptions & { persistent: boolean; uefi: boolean },
  ): Promise<void> {
    const options = [opts.persistent && 'persistent', opts.uefi && 'efiboot'].filter(Boolean);
    const args = ['chassis', 'bootdev', device];
    if (options.length > 0) args.push(`options=${options.join(',')}`);
    await this.#run(bmc, args, opts);
  }

  async bootDevice(bmc: BmcTarget, opts: CallOptions = {}): Promise<BootDeviceSetting> {
    const out = await this.#run(bmc, ['chassis', 'bootparam', 'get', '5'], opts);
    const setting = parseIpmitoolBootParam(out.stdout);
    if (!setting) throw unexpected(bmc, out);
    return setting;
  }

  async #run(bmc: BmcTarget, command: string[], opts: CallOptions): Promise<ToolOutput> {
    const password = bmc.password.reveal();
    const out = await runTool({
      bin: 'ipmitool',
      pkg: 'ipmitool',
      args: [...ipmitoolArgs(bmc, bmc.options, password !== ''), ...command],
      env: password === '' ? {} : { IPMI_PASSWORD: password },
      timeoutMs: bmc.options.timeoutMs + KILL_SLACK_MS,
      signal: opts.signal,
    });
    if (out.timedOut || out.exitCode !== 0) throw classifyIpmitoolFailure(bmc, out, bmc.options.timeoutMs);
    return out;
  }
}

/** The connection arguments; exported for tests that check nothing secret is in them. */
export function ipmitoolArgs(bmc: BmcTarget, options: BmcOptions, withPassword: boolean): string[] {
  // ipmitool retransmits -R times, waiting -N seconds each: spread the timeout over two tries.
  const perTry = Math.max(1, Math.round(options.timeoutMs / 2000));
  const args = ['-I', 'lanplus', '-H', bmc.host, '-p', String(bmc.port)];
  if (bmc.username !== '') args.push('-U', bmc.username);
  if (withPassword) args.push('-E');
  args.push('-C', String(options.cipherSuite), '-N', String(perTry), '-R', '1', '-v');
  return args;
}

export function parseIpmitoolPowerState(stdout: string): PowerState | undefined {
  const match = /Chassis Power is (on|off)/i.exec(stdout);
  return match ? (match[1]?.toLowerCase() as PowerState) : undefined;
}

/** Parses `chassis bootparam get 5` (boot flags). */
export function parseIpmitoolBootParam(stdout: string): BootDeviceSetting | undefined {
  const selector = /Boot Device Selector\s*:\s*(.+)/i.exec(stdout)?.[1]?.trim();
  if (selector === undefined) return undefined;
  let device: BootDeviceSetting['device'] = 'other';
  if (/PXE/i.test(selector)) device = 'pxe';
  else if (/Hard-Drive/i.test(selector) && !/Safe|Remote/i.test(selector)) device = 'disk';
  else if (/No override/i.test(selector)) device = 'none';
  return {
    device,
    persistent: /Options apply to all future boots/i.test(stdout),
    uefi: /BIOS EFI boot/i.test(stdout),
  };
}

/** Lines `-v` prints on every call; never the reason for a failure. */
const NOISE = [
  /^Loading IANA PEN Registry/i,
  /^Running Get VSO Capabilities/i,
  /^Discovered IPMB address/i,
  /^Invalid completion code received: Invalid command$/i,
  /^>> /,
];

const AUTH = [
  /RAKP \d HMAC is invalid/i,
  /RAKP \d message indicates an error : .*/i,
  /unauthorized name/i,
  /password (invalid|incorrect)/i,
  /Invalid user name/i,
  /Authentication type .* not supported/i,
  /insufficient privilege/i,
  /Requested privilege level .* not permitted/i,
  /Set Session Privilege Level to .* failed/i,
];
const BUSY = [/insufficient resources for session/i, /Node busy/i, /BMC busy/i, /Out of space/i];
const CIPHER = [
  /invalid (authentication|integrity|confidentiality) algorithm/i,
  /Unsupported cipher suite/i,
  /no matching cipher suite/i,
];
const UNSUPPORTED = [
  /Invalid command/i,
  /Command not supported/i,
  /Parameter not supported/i,
  /Invalid data field in request/i,
  /not supported in present state/i,
];
const UNREACHABLE = [
  /Get Auth Capabilities error/i,
  /No response from remote controller/i,
  // A late answer to a retransmitted request: the BMC is slow, not wrong.
  /IPMI Request Match NOT FOUND/i,
  /Address lookup for .* failed/i,
  /Connection refused/i,
  /Unable to establish IPMI v2 \/ RMCP\+ session/i,
  /Unable to establish (LAN|IPMI) session/i,
];

/** Turns a failed ipmitool run into the matching BmcError, quoting the most telling line. */
export function classifyIpmitoolFailure(
  bmc: Pick<BmcTarget, 'host' | 'port'>,
  out: ToolOutput,
  timeoutMs: number,
): BmcError {
  const fields = (bmcMessage: string) => ({ bmc: bmcKey(bmc), driver: DRIVER, bmcMessage });
  if (out.timedOut) return new BmcUnreachableError(fields(`no answer within ${timeoutMs} ms`));
  const lines = `${out.stderr}\n${out.stdout}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !NOISE.some((n) => n.test(l)))
    .map((l) => l.replace(/^>\s*/, ''));
  const find = (patterns: RegExp[]) => lines.find((l) => patterns.some((p) => p.test(l)));
  let line = find(AUTH);
  if (line) return new BmcAuthError(fields(line));
  line = find(BUSY);
  if (line) return new BmcBusyError(fields(line));
  line = find(CIPHER);
  if (line) {
    return new BmcUnsupportedError({
      ...fields(line),
      hint: 'set bmc_options.cipher_suite to one the BMC offers (often 3, or 17 on newer BMCs)',
    });
  }
  line = find(UNSUPPORTED);
  if (line) return new BmcUnsupportedError(fields(line));
  line = find(UNREACHABLE);
  if (line) return new BmcUnreachableError(fields(line));
  return new BmcCommandError(fields(lines.at(-1) ?? `ipmitool exited with code ${out.exitCode}`));
}

function unexpected(bmc: BmcTarget, out: ToolOutput): BmcError {
  return new BmcCommandError({
    bmc: bmcKey(bmc),
    driver: DRIVER,
    bmcMessage: `unexpected output: ${out.stdout.slice(0, 200)}`,
  });
}
