import { describe, expect, it } from 'vitest';
import { Flavor, Node, Project, Switch } from '../../build/gen/ingot/v1/inventory.ts';
import { type FieldViolation, InvalidArgumentError } from '../../controller/src/domain/errors.ts';
import {
  type FieldSpec,
  oneOf,
  positiveInt,
  readFields,
  stringMap,
  text,
} from '../../controller/src/domain/fields.ts';
import { isName } from '../../controller/src/domain/formats.ts';
import {
  defaultNodeName,
  defaultSwitchName,
  FLAVOR_FIELDS,
  NODE_FIELDS,
  PROJECT_FIELDS,
  SWITCH_FIELDS,
} from '../../controller/src/domain/inventory.ts';
import { Violations } from '../../controller/src/domain/violations.ts';

/** Runs readFields the way the repository does and returns what a caller would see. */
function read(
  specs: readonly FieldSpec[],
  message: object | undefined,
  prefix: string,
  mask?: string[],
): { fields: Record<string, unknown>; violations: FieldViolation[] } {
  const violations = new Violations();
  const fields = readFields(specs, message as Record<string, unknown> | undefined, prefix, violations, mask);
  try {
    violations.throwIfAny();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    return { fields, violations: (err as InvalidArgumentError).violations };
  }
  return { fields, violations: [] };
}

const validNode = Node.fromPartial({
  ip: '10.0.0.5',
  mac: '52-54-00-AB-CD-EF',
  cpus: 8,
  ramMb: 16384,
  diskGb: 100,
  bmcAddress: 'ipmi://10.0.1.5:623',
});

describe('Violations', () => {
  it('is empty and does not throw until something is added', () => {
    const violations = new Violations();
    expect(violations.empty).toBe(true);
    expect(() => violations.throwIfAny()).not.toThrow();
    violations.add('node.mac', 'is required');
    expect(violations.empty).toBe(false);
  });

  it('throws one InvalidArgumentError carrying every violation in order', () => {
    const violations = new Violations();
    violations.add('node.mac', 'is required');
    violations.add('node.ip', 'must be an IP');
    const err = (() => {
      try {
        violations.throwIfAny();
      } catch (e) {
        return e as InvalidArgumentError;
      }
    })();
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err?.code).toBe(3);
    expect(err?.reason).toBe('INVALID_ARGUMENT');
    expect(err?.violations).toEqual([
      { field: 'node.mac', description: 'is required' },
      { field: 'node.ip', description: 'must be an IP' },
    ]);
    expect(err?.message).toBe('node.mac: is required; node.ip: must be an IP');
  });
});

describe('readFields on create', () => {
  it('normalises every given field and leaves unset optional fields out', () => {
    const { fields, violations } = read(NODE_FIELDS, validNode, 'node');
    expect(violations).toEqual([]);
    expect(fields).toEqual({
      ip: '10.0.0.5',
      mac: '52:54:00:ab:cd:ef',
      cpus: 8,
      ramMb: 16384,
      diskGb: 100,
      bmcAddress: '10.0.1.5:623',
    });
  });

  it('reports a missing message under the resource name', () => {
    expect(read(NODE_FIELDS, undefined, 'node').violations).toEqual([
      { field: 'node', description: 'is required' },
    ]);
  });

  it('reports every missing required field with its proto path', () => {
    const { violations } = read(NODE_FIELDS, Node.fromPartial({}), 'node');
    expect(violations).toEqual(
      ['node.ip', 'node.mac', 'node.cpus', 'node.ram_mb', 'node.disk_gb', 'node.bmc_address'].map(
        (field) => ({
          field,
          description: 'is required',
        }),
      ),
    );
  });

  it('collects missing and invalid fields in one pass', () => {
    const { violations } = read(
      NODE_FIELDS,
      Node.fromPartial({
        name: '-bad',
        ip: '10.0.0.256',
        mac: '01:00:5e:00:00:01',
        cpus: 8,
        ramMb: 1.5,
        bmcAddress: 'redfish://10.0.1.5',
        powerDriver: 'wol',
        switchPort: 'ge-0/0/1\u0007',
      }),
      'node',
    );
    expect(violations.map((v) => v.field)).toEqual([
      'node.name',
      'node.ip',
      'node.mac',
      'node.ram_mb',
      'node.disk_gb',
      'node.bmc_address',
      'node.power_driver',
      'node.switch_port',
    ]);
    expect(violations.find((v) => v.field === 'node.ram_mb')?.description).toMatch(/whole number of MiB/);
    expect(violations.find((v) => v.field === 'node.disk_gb')?.description).toBe('is required');
    expect(violations.find((v) => v.field === 'node.mac')?.description).toMatch(/unicast MAC/);
    expect(violations.find((v) => v.field === 'node.power_driver')?.description).toBe(
      'must be one of ipmitool, freeipmi',
    );
  });

  it('requires a switch address and driver and validates both', () => {
    expect(read(SWITCH_FIELDS, Switch.fromPartial({}), 'switch').violations.map((v) => v.field)).toEqual([
      'switch.address',
      'switch.driver',
    ]);
    const { fields, violations } = read(
      SWITCH_FIELDS,
      Switch.fromPartial({ address: '[2001:DB8::2]:22', driver: ' Juniper ' }),
      'switch',
    );
    expect(violations).toEqual([]);
    expect(fields).toEqual({ address: '[2001:db8::2]:22', driver: 'juniper' });
  });

  it('keeps a password verbatim, spaces included, up to 1024 characters', () => {
    const password = ` ${'p'.repeat(1022)} `;
    const ok = read(NODE_FIELDS, { ...validNode, bmcPassword: password }, 'node');
    expect(ok.fields.bmcPassword).toBe(password);
    const tooLong = read(NODE_FIELDS, { ...validNode, bmcPassword: 'p'.repeat(1025) }, 'node');
    expect(tooLong.violations).toEqual([
      { field: 'node.bmc_password', description: 'must be at most 1024 characters' },
    ]);
  });
});

describe('readFields on update', () => {
  it('reads only the fields the mask names', () => {
    const { fields, violations } = read(
      NODE_FIELDS,
      { ...validNode, description: 'ignored', maintenanceReason: 'disk swap' },
      'node',
      ['maintenance_reason', 'cpus'],
    );
    expect(violations).toEqual([]);
    expect(fields).toEqual({ maintenanceReason: 'disk swap', cpus: 8 });
  });

  it('accepts mask paths prefixed with the resource name', () => {
    const { fields, violations } = read(NODE_FIELDS, validNode, 'node', ['node.mac', 'node.ram_mb']);
    expect(violations).toEqual([]);
    expect(fields).toEqual({ mac: '52:54:00:ab:cd:ef', ramMb: 16384 });
  });

  it('rejects an empty mask', () => {
    expect(read(NODE_FIELDS, validNode, 'node', []).violations).toEqual([
      { field: 'update_mask', description: 'must name at least one field' },
    ]);
  });

  it('rejects unknown paths, camelCase keys and other resources’ prefixes, naming the path', () => {
    const { violations } = read(NODE_FIELDS, validNode, 'node', ['colour', 'ramMb', 'switch.name', 'id']);
    expect(violations).toHaveLength(4);
    expect(violations.every((v) => v.field === 'update_mask')).toBe(true);
    expect(violations.map((v) => v.description)).toEqual([
      expect.stringContaining('"colour" is not a field of node'),
      expect.stringContaining('"ramMb" is not a field of node'),
      expect.stringContaining('"switch.name" is not a field of node'),
      expect.stringContaining('"id" is not a field of node'),
    ]);
  });

  it('rejects fields fixed at creation, with or without prefix', () => {
    const flavor = Flavor.fromPartial({ name: 'm1', vcpus: 8, ramMb: 1024, diskGb: 10 });
    const { violations, fields } = read(FLAVOR_FIELDS, flavor, 'flavor', ['vcpus', 'flavor.disk_gb', 'name']);
    expect(violations).toEqual([
      { field: 'update_mask', description: '"vcpus" cannot be changed' },
      { field: 'update_mask', description: '"flavor.disk_gb" cannot be changed' },
    ]);
    expect(fields).toEqual({ name: 'm1' });
  });

  it('clears an optional field named in the mask but left unset', () => {
    const { fields, violations } = read(NODE_FIELDS, Node.fromPartial({}), 'node', [
      'maintenance_reason',
      'maintenance',
      'switch_id',
      'bmc_password',
    ]);
    expect(violations).toEqual([]);
    expect(fields).toEqual({ maintenanceReason: '', maintenance: false, switchId: '', bmcPassword: '' });
  });

  it('resets a cleared power driver to the default', () => {
    expect(read(NODE_FIELDS, Node.fromPartial({}), 'node', ['power_driver']).fields).toEqual({
      powerDriver: 'ipmitool',
    });
  });

  it('clears a map field with an empty map', () => {
    const flavor = Flavor.fromPartial({ extraSpecs: {} });
    expect(read(FLAVOR_FIELDS, flavor, 'flavor', ['extra_specs']).fields).toEqual({ extraSpecs: {} });
  });

  it('refuses to clear a required field', () => {
    expect(read(PROJECT_FIELDS, Project.fromPartial({}), 'project', ['project.name']).violations).toEqual([
      { field: 'project.name', description: 'is required' },
    ]);
    expect(read(NODE_FIELDS, Node.fromPartial({}), 'node', ['cpus']).violations).toEqual([
      { field: 'node.cpus', description: 'is required' },
    ]);
  });

  it('reports mask problems and value problems together', () => {
    const { violations } = read(NODE_FIELDS, { ...validNode, mac: 'nope' }, 'node', ['bogus', 'mac']);
    expect(violations.map((v) => v.field)).toEqual(['update_mask', 'node.mac']);
  });
});

describe('text', () => {
  const parse = text(10);

  it('trims and accepts up to the limit', () => {
    expect(parse('  0123456789  ')).toBe('0123456789');
    expect(parse('')).toBe('');
  });

  it('rejects text over the limit', () => {
    expect(parse('01234567890')).toEqual({ invalid: 'must be at most 10 characters' });
  });

  it.each(['a\u0000b', 'a\nb', 'a\tb', 'a\u001bb'])('rejects control characters in %j', (input) => {
    expect(parse(input)).toEqual({ invalid: 'must not contain control characters' });
  });

  it('accepts non-ASCII text', () => {
    expect(parse('Zürich ✓')).toBe('Zürich ✓');
  });
});

describe('positiveInt', () => {
  const parse = positiveInt(4096, 'CPUs');
  const hint = { invalid: 'must be a whole number of CPUs from 1 to 4096' };

  it('accepts 1 and the maximum', () => {
    expect(parse(1)).toBe(1);
    expect(parse(4096)).toBe(4096);
  });

  it('reads the proto zero value as not given', () => {
    expect(parse(0)).toBe(0);
    expect(parse(undefined)).toBe(0);
  });

  it.each([4097, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '8'])('rejects %j', (input) => {
    expect(parse(input)).toEqual(hint);
  });
});

describe('oneOf', () => {
  const parse = oneOf(['juniper', 'noop']);

  it('accepts a listed value, trimmed and lower-cased', () => {
    expect(parse(' NoOp ')).toBe('noop');
  });

  it.each(['cisco', '', 1])('rejects %j, listing the choices', (input) => {
    expect(parse(input)).toEqual({ invalid: 'must be one of juniper, noop' });
  });
});

describe('stringMap', () => {
  it('accepts keys of the allowed characters and values up to 255 characters', () => {
    const map = { 'hw:cpu_policy': 'dedicated', 'a/b-c.d_e': 'v'.repeat(255), ['k'.repeat(255)]: '' };
    expect(stringMap(map)).toEqual(map);
  });

  it('reads an absent map as empty', () => {
    expect(stringMap(undefined)).toEqual({});
  });

  it('accepts 100 entries and rejects 101', () => {
    const entries = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']));
    expect(stringMap(entries(100))).toEqual(entries(100));
    expect(stringMap(entries(101))).toEqual({ invalid: 'must have at most 100 entries' });
  });

  it.each(['', 'k'.repeat(256), 'has space', 'ключ', 'a=b'])('rejects key %j', (key) => {
    const result = stringMap({ [key]: 'v' }) as { invalid: string };
    expect(result.invalid).toMatch(/^key ".*" must be 1-255 characters/);
  });

  it('quotes at most 40 characters of a bad key', () => {
    const result = stringMap({ [`${'k'.repeat(300)} `]: 'v' }) as { invalid: string };
    expect(result.invalid).toContain(`key "${'k'.repeat(40)}"`);
    expect(result.invalid).not.toContain('k'.repeat(41));
  });

  it('rejects a value over 255 characters', () => {
    expect(stringMap({ policy: 'v'.repeat(256) })).toEqual({
      invalid: 'value of "policy" must be at most 255 characters',
    });
  });

  it('reports map problems under the field path', () => {
    const flavor = Flavor.fromPartial({
      name: 'm1',
      vcpus: 1,
      ramMb: 1,
      diskGb: 1,
      extraSpecs: { 'a b': 'x' },
    });
    expect(read(FLAVOR_FIELDS, flavor, 'flavor').violations.map((v) => v.field)).toEqual([
      'flavor.extra_specs',
    ]);
  });
});

describe('default names', () => {
  it('names a node after its MAC', () => {
    expect(defaultNodeName('52:54:00:ab:cd:ef')).toBe('node-525400abcdef');
    expect(isName(defaultNodeName('52:54:00:ab:cd:ef'))).toBe(true);
  });

  it.each([
    ['sw1.lab:22', 'sw1.lab'],
    ['10.0.0.2', '10.0.0.2'],
    ['[2001:db8::2]:22', '2001-db8--2'],
    ['2001:db8::2', '2001-db8--2'],
  ])('names a switch at %j %j', (address, expected) => {
    expect(defaultSwitchName(address)).toBe(expected);
    expect(isName(defaultSwitchName(address))).toBe(true);
  });

  it('gives a valid name to a switch at [::1]', () => {
    expect(isName(defaultSwitchName('[::1]:22'))).toBe(true);
  });
});
