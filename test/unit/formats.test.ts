import { describe, expect, it } from 'vitest';
import {
  isId,
  isName,
  normalizeBmcAddress,
  normalizeIp,
  normalizeMac,
  parseHostPort,
} from '../../controller/src/domain/formats.ts';

describe('normalizeMac', () => {
  it.each([
    ['52:54:00:12:34:56', 'colon'],
    ['52-54-00-12-34-56', 'dash'],
    ['5254.0012.3456', 'Cisco dotted'],
    ['525400123456', 'bare hex'],
    ['52:54:00:AB:CD:EF', 'upper case'],
    ['  52:54:00:ab:cd:ef\n', 'surrounding whitespace'],
  ])('accepts %s (%s) and returns lower-case colon form', (input) => {
    expect(normalizeMac(input)).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  });

  it('normalises every notation of one address to the same value', () => {
    const forms = ['52:54:00:AB:CD:EF', '52-54-00-ab-cd-ef', '5254.00ab.cdef', '525400ABCDEF'];
    expect(new Set(forms.map(normalizeMac))).toEqual(new Set(['52:54:00:ab:cd:ef']));
  });

  it.each([
    ['01:00:5e:00:00:01', 'multicast first octet'],
    ['33:33:00:00:00:01', 'IPv6 multicast'],
    ['ff:ff:ff:ff:ff:ff', 'broadcast'],
    ['00:00:00:00:00:00', 'all zero'],
    ['0000.0000.0000', 'all zero, dotted'],
    ['52:54:00-12:34:56', 'mixed separators'],
    ['52-54-00:12-34-56', 'mixed separators'],
    ['52:54:00:12:34', 'five octets'],
    ['52:54:00:12:34:56:78', 'seven octets'],
    ['5254001234', 'ten hex digits'],
    ['52540012345678', 'fourteen hex digits'],
    ['5254.0012.345', 'short dotted group'],
    ['52:54:00:12:34:5g', 'non-hex digit'],
    ['5:54:00:12:34:56', 'one-digit octet'],
    ['', 'empty'],
  ])('rejects %j (%s)', (input) => {
    expect(normalizeMac(input)).toBeUndefined();
  });
});

describe('normalizeIp', () => {
  it.each([
    ['10.0.0.5', '10.0.0.5'],
    [' 192.168.1.1 ', '192.168.1.1'],
    ['2001:DB8::1', '2001:db8::1'],
    ['::1', '::1'],
    ['::ffff:10.0.0.5', '::ffff:10.0.0.5'],
  ])('accepts %j as %j', (input, expected) => {
    expect(normalizeIp(input)).toBe(expected);
  });

  it.each([
    '010.0.0.5',
    '10.0.0.05',
    '256.0.0.1',
    '10.0.0',
    '10.0.0.5:623',
    '[::1]',
    '2001:db8::1::2',
    'node1.lab',
    'not an ip',
    '',
  ])('rejects %j', (input) => {
    expect(normalizeIp(input)).toBeUndefined();
  });
});

describe('parseHostPort', () => {
  it.each([
    ['switch1', { host: 'switch1' }],
    ['Switch1.Lab.Example', { host: 'switch1.lab.example' }],
    ['switch1:22', { host: 'switch1', port: 22 }],
    ['10.0.0.5', { host: '10.0.0.5' }],
    ['10.0.0.5:623', { host: '10.0.0.5', port: 623 }],
    ['[2001:db8::1]:623', { host: '2001:db8::1', port: 623 }],
    ['[2001:DB8::1]', { host: '2001:db8::1' }],
    ['2001:db8::1', { host: '2001:db8::1' }],
    ['::1', { host: '::1' }],
    ['host:1', { host: 'host', port: 1 }],
    ['host:65535', { host: 'host', port: 65535 }],
    [`${'a'.repeat(63)}.lab`, { host: `${'a'.repeat(63)}.lab` }],
  ])('parses %j', (input, expected) => {
    expect(parseHostPort(input)).toEqual(expected);
  });

  it.each([
    ['host:0', 'port 0'],
    ['host:65536', 'port above 65535'],
    ['host:123456', 'six-digit port'],
    ['host:ssh', 'non-numeric port'],
    ['host:+22', 'signed port'],
    ['host:', 'empty port'],
    ['[2001:db8::1]:0', 'v6 with port 0'],
    ['[2001:db8::1]:65536', 'v6 with port above 65535'],
    ['[10.0.0.5]:623', 'v4 in brackets'],
    ['[switch1]:22', 'hostname in brackets'],
    ['2001:db8::1:623:x', 'bare v6 with trailing junk'],
    ['a:b:c', 'too many colons'],
    ['-switch', 'label starting with a hyphen'],
    ['switch-', 'label ending with a hyphen'],
    ['sw_1', 'underscore'],
    ['sw1..lab', 'empty label'],
    ['sw1.', 'trailing dot'],
    [`${'a'.repeat(64)}.lab`, 'label longer than 63'],
    [Array.from({ length: 64 }, () => 'abc').join('.'), 'name longer than 253'],
    ['sw 1', 'space'],
    ['', 'empty'],
  ])('rejects %j (%s)', (input) => {
    expect(parseHostPort(input)).toBeUndefined();
  });

  it.each(['256.1.1.1', '999.999.999.999', '010.0.0.1', '10.0.0', '10.0.0.1.2:22', 'rack.42', '7'])(
    'rejects %j: a numeric top-level label is no host name',
    (input) => {
      expect(parseHostPort(input)).toBeUndefined();
    },
  );

  it('accepts digits in labels other than the last', () => {
    expect(parseHostPort('42.rack1.lab:22')).toEqual({ host: '42.rack1.lab', port: 22 });
  });
});

describe('normalizeBmcAddress', () => {
  it.each([
    ['ipmi://10.0.0.5', '10.0.0.5'],
    ['ipmi://10.0.0.5:623', '10.0.0.5:623'],
    ['IPMI://bmc1.lab:6230', 'bmc1.lab:6230'],
    ['ipmi://[2001:db8::5]:623', '[2001:db8::5]:623'],
    ['10.0.0.5:6230', '10.0.0.5:6230'],
    ['2001:db8::5', '[2001:db8::5]'],
    [' bmc1.lab ', 'bmc1.lab'],
  ])('normalises %j to %j', (input, expected) => {
    expect(normalizeBmcAddress(input)).toBe(expected);
  });

  it.each([
    'redfish://10.0.0.5',
    'https://10.0.0.5:443',
    'ipmi://',
    'ipmi://10.0.0.5:0',
    'ipmi://10.0.0.5/path',
    'ipmi://user@10.0.0.5',
    '',
  ])('rejects %j', (input) => {
    expect(normalizeBmcAddress(input)).toBeUndefined();
  });
});

describe('isName / isId', () => {
  it.each(['n', 'node-1', 'Node_1.lab', '0node', 'a'.repeat(63)])('accepts name %j', (input) => {
    expect(isName(input)).toBe(true);
  });

  it.each([
    '',
    '-node',
    '.node',
    '_node',
    'a'.repeat(64),
    'node 1',
    'node/1',
    'nöde',
    '0190a6f5-7c1e-7000-8000-0123456789ab',
  ])('rejects name %j', (input) => {
    expect(isName(input)).toBe(false);
  });

  it('recognises UUIDs as ids in either case and nothing else', () => {
    expect(isId('0190a6f5-7c1e-7000-8000-0123456789ab')).toBe(true);
    expect(isId('0190A6F5-7C1E-7000-8000-0123456789AB')).toBe(true);
    expect(isId('0190a6f5-7c1e-7000-8000-0123456789a')).toBe(false);
    expect(isId('0190a6f57c1e700080000123456789ab')).toBe(false);
    expect(isId('node-1')).toBe(false);
  });
});
