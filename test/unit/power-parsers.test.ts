import { describe, expect, it } from 'vitest';
import { parseBmcOptions, resolveBmcOptions } from '../../controller/src/drivers/power/bmc-options.ts';
import {
  BmcAuthError,
  BmcBusyError,
  BmcCommandError,
  BmcUnreachableError,
  BmcUnsupportedError,
} from '../../controller/src/drivers/power/errors.ts';
import type { ToolOutput } from '../../controller/src/drivers/power/exec.ts';
import {
  classifyFreeipmiFailure,
  freeipmiArgs,
  freeipmiConfigFile,
  parseChassisBootFlags,
  parseIpmipowerLine,
} from '../../controller/src/drivers/power/freeipmi.ts';
import {
  classifyIpmitoolFailure,
  ipmitoolArgs,
  parseIpmitoolBootParam,
  parseIpmitoolPowerState,
} from '../../controller/src/drivers/power/ipmitool.ts';
import { type BmcTarget, Secret } from '../../controller/src/drivers/power/power-driver.ts';

// Real output of ipmitool 1.8.19 and FreeIPMI 1.6.10 against ipmi_sim, as captured in the lab.
const BMC: BmcTarget = {
  host: '10.0.2.11',
  port: 623,
  username: 'root',
  password: new Secret('calvin'),
  options: resolveBmcOptions({ freeipmiWorkarounds: ['opensesspriv'] }),
};
const failed = (stderr: string, stdout = ''): ToolOutput => ({
  stdout,
  stderr,
  exitCode: 1,
  timedOut: false,
});
const IPMITOOL_NOISE =
  'Loading IANA PEN Registry...\nRunning Get VSO Capabilities my_addr 0x20, transit 0, target 0x20\nInvalid completion code received: Invalid command\nDiscovered IPMB address 0x0\n';

describe('ipmitool output', () => {
  it('reads the power state', () => {
    expect(parseIpmitoolPowerState('Chassis Power is on')).toBe('on');
    expect(parseIpmitoolPowerState('Chassis Power is off\n')).toBe('off');
    expect(parseIpmitoolPowerState('Chassis Power Control: Up/On')).toBeUndefined();
  });

  it('reads boot flags (parameter 5)', () => {
    const pxe = `Boot parameter version: 1
Boot parameter 5 is valid/unlocked
Boot parameter data: 0004000000
 Boot Flags :
   - Boot Flag Invalid
   - Options apply to only next boot
   - BIOS PC Compatible (legacy) boot
   - Boot Device Selector : Force PXE
   - BIOS verbosity : System Default`;
    expect(parseIpmitoolBootParam(pxe)).toEqual({ device: 'pxe', persistent: false, uefi: false });
    const disk = pxe
      .replace('Force PXE', 'Force Boot from default Hard-Drive')
      .replace('Options apply to only next boot', 'Options apply to all future boots')
      .replace('BIOS PC Compatible (legacy) boot', 'BIOS EFI boot');
    expect(parseIpmitoolBootParam(disk)).toEqual({ device: 'disk', persistent: true, uefi: true });
    expect(parseIpmitoolBootParam(pxe.replace('Force PXE', 'No override'))?.device).toBe('none');
    expect(parseIpmitoolBootParam(pxe.replace('Force PXE', 'Force Boot from CD/DVD'))?.device).toBe('other');
    expect(parseIpmitoolBootParam('nonsense')).toBeUndefined();
  });

  it.each([
    ['> RAKP 2 HMAC is invalid', BmcAuthError, 'RAKP 2 HMAC is invalid'],
    ['RAKP 2 message indicates an error : unauthorized name', BmcAuthError, 'unauthorized name'],
    [
      'Error in open session response message : insufficient resources for session',
      BmcBusyError,
      'insufficient',
    ],
    [
      'Error in open session response message : invalid authentication algorithm',
      BmcUnsupportedError,
      'cipher',
    ],
    [
      'Get Auth Capabilities error\nError issuing Get Channel Authentication Capabilities request',
      BmcUnreachableError,
      'Auth Capabilities',
    ],
    ['IPMI Request Match NOT FOUND', BmcUnreachableError, 'Match NOT FOUND'],
    [
      'Set Chassis Power Control to Diag failed: Invalid data field in request',
      BmcUnsupportedError,
      'Invalid data field',
    ],
  ])('classifies %j', (stderr, type, words) => {
    const err = classifyIpmitoolFailure(
      BMC,
      failed(`${IPMITOOL_NOISE}${stderr}\nError: Unable to establish IPMI v2 / RMCP+ session`),
      1000,
    );
    expect(err).toBeInstanceOf(type);
    expect(`${err.bmcMessage} ${err.message}`).toContain(words);
    expect(err.metadata).toMatchObject({ bmc: '10.0.2.11:623', driver: 'ipmitool' });
  });

  it('reports an unknown failure as it is, not retried', () => {
    const err = classifyIpmitoolFailure(
      BMC,
      failed(`${IPMITOOL_NOISE}something nobody has seen before`),
      1000,
    );
    expect(err).toBeInstanceOf(BmcCommandError);
    expect(err.bmcMessage).toBe('something nobody has seen before');
    expect(err.transient).toBe(false);
  });

  it('counts a killed (timed out) tool as unreachable, and only then as transient', () => {
    const err = classifyIpmitoolFailure(
      BMC,
      { stdout: '', stderr: '', exitCode: undefined, timedOut: true },
      5000,
    );
    expect(err).toBeInstanceOf(BmcUnreachableError);
    expect(err.bmcMessage).toBe('no answer within 5000 ms');
    expect(err.transient).toBe(true);
    expect(classifyIpmitoolFailure(BMC, failed('> RAKP 2 HMAC is invalid'), 1).transient).toBe(false);
  });

  it('puts the cipher suite and -E on the command line, never the password', () => {
    const args = ipmitoolArgs(BMC, BMC.options, true);
    expect(args).toEqual([
      '-I',
      'lanplus',
      '-H',
      '10.0.2.11',
      '-p',
      '623',
      '-U',
      'root',
      '-E',
      '-C',
      '3',
      '-N',
      '5',
      '-R',
      '1',
      '-v',
    ]);
    expect(args.join(' ')).not.toContain('calvin');
  });
});

describe('FreeIPMI output', () => {
  it('reads ipmipower lines', () => {
    expect(parseIpmipowerLine('127.0.0.1: on')).toBe('on');
    expect(parseIpmipowerLine('10.0.2.11: ok\n')).toBe('ok');
    expect(parseIpmipowerLine('')).toBeUndefined();
  });

  it('reads Chassis_Boot_Flags from ipmi-chassis-config', () => {
    const out = `#
# "Boot_Device" allows the user to configure which device the BIOS should boot
#
Section Chassis_Boot_Flags
	## Possible values: Yes/No (Yes = All Future Boots; No = Next Boot Only)
	Boot_Flags_Persistent                         Yes
	## Possible values: PC-COMPATIBLE/EFI
	BIOS_Boot_Type                                EFI
	## Possible values: NO-OVERRIDE/PXE/HARD-DRIVE/HARD-DRIVE-SAFE-MODE/
	Boot_Device                                   PXE
EndSection`;
    expect(parseChassisBootFlags(out)).toEqual({ device: 'pxe', persistent: true, uefi: true });
    expect(parseChassisBootFlags(out.replace(/PXE$/m, 'HARD-DRIVE'))?.device).toBe('disk');
    expect(parseChassisBootFlags(out.replace(/PXE$/m, 'NO-OVERRIDE'))?.device).toBe('none');
    expect(parseChassisBootFlags('Section X\nEndSection')).toBeUndefined();
  });

  it.each([
    ['127.0.0.1: password invalid', BmcAuthError, 'password invalid'],
    ['127.0.0.1: username invalid', BmcAuthError, 'username invalid'],
    ['ipmi-chassis: password invalid', BmcAuthError, 'password invalid'],
    ['127.0.0.1: BMC busy', BmcBusyError, 'BMC busy'],
    ['127.0.0.1: connection timeout', BmcUnreachableError, 'connection timeout'],
    ['/usr/sbin/ipmi-config: session timeout', BmcUnreachableError, 'session timeout'],
    ['127.0.0.1: cipher suite id unavailable', BmcUnsupportedError, 'cipher suite id unavailable'],
    ['ipmi_ctx_open_outofband_2_0: internal IPMI error', BmcCommandError, 'internal IPMI error'],
  ])('classifies %j', (line, type, words) => {
    const err = classifyFreeipmiFailure(BMC, failed('', line), 1000);
    expect(err).toBeInstanceOf(type);
    expect(err.bmcMessage).toContain(words);
    expect(err.bmcMessage).not.toMatch(/^127\.0\.0\.1|^ipmi/);
  });

  it('writes the password to a config file, escaped the way FreeIPMI’s parser reads it', () => {
    expect(freeipmiConfigFile('')).toBe('');
    expect(freeipmiConfigFile('calvin')).toBe('password "calvin"\n');
    // FreeIPMI strips `#` comments first and takes \\, \# and \" escapes inside quotes.
    expect(freeipmiConfigFile('a b#c"d\\e')).toBe('password "a b\\#c\\"d\\\\e"\n');
    expect(() => freeipmiConfigFile('two\nlines')).toThrow(/line break/);
  });

  it('names the config file, workarounds and cipher suite; never the password', () => {
    const args = freeipmiArgs(BMC, '/run/ingot/pw');
    expect(args).toEqual([
      '-h',
      '10.0.2.11:623',
      '-D',
      'LAN_2_0',
      '-I',
      '3',
      '--config-file',
      '/run/ingot/pw',
      '--session-timeout',
      '10000',
      '--retransmission-timeout',
      '400',
      '-u',
      'root',
      '-W',
      'opensesspriv',
    ]);
    expect(freeipmiArgs({ ...BMC, host: 'fd00::5' }, '/f')[1]).toBe('[fd00::5]:623');
  });
});

describe('BMC options', () => {
  it('stores only overrides; zero or unset means the default', () => {
    expect(parseBmcOptions(undefined)).toBeNull();
    expect(
      parseBmcOptions({ cipherSuite: 0, freeipmiWorkarounds: [], timeoutMs: 0, powerWaitMs: 0 }),
    ).toBeNull();
    expect(
      parseBmcOptions({
        cipherSuite: 17,
        freeipmiWorkarounds: [' OpenSessPriv ', 'opensesspriv'],
        retries: 0,
      }),
    ).toEqual({
      cipherSuite: 17,
      freeipmiWorkarounds: ['opensesspriv'],
      retries: 0,
    });
    expect(resolveBmcOptions({ retries: 0 })).toEqual({
      cipherSuite: 3,
      freeipmiWorkarounds: [],
      timeoutMs: 10_000,
      retries: 0,
      powerWaitMs: 60_000,
    });
  });

  it('names every bad setting', () => {
    expect(parseBmcOptions({ cipherSuite: 18, timeoutMs: 10, retries: 11, powerWaitMs: 1.5 })).toEqual({
      invalid:
        'cipher_suite must be from 1 to 17; timeout_ms must be from 500 to 120000; retries must be from 0 to 10; power_wait_ms must be from 1000 to 3600000',
    });
    expect(parseBmcOptions({ freeipmiWorkarounds: ['fixit'] })).toMatchObject({
      invalid: /unknown flag "fixit"/,
    });
  });
});

describe('Secret', () => {
  it('never prints', () => {
    const secret = new Secret('calvin');
    expect(JSON.stringify({ password: secret })).toBe('{"password":"[redacted]"}');
    expect(`${secret}`).toBe('[redacted]');
    expect(secret.reveal()).toBe('calvin');
  });
});
