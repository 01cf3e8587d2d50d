import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bmctlAgainst } from '../support/bmctl.ts';
import { BACKENDS, removeDataDir, startTestController, type TestController } from '../support/controller.ts';

// bmctl against a real controller, run in-process. The token comes from the controller's
// admin.token file through INGOT_DATA_DIR, as an operator on the controller host would use it.

describe.each(BACKENDS)('bmctl against a controller on %s', (backend) => {
  let ctl: TestController;
  let cwd: string;

  const cli = bmctlAgainst(() => ({ address: ctl.address, dataDir: ctl.dataDir }), {
    cwd: () => cwd,
    stdin: 'stdin-secret\n',
  });
  const bmctl = cli.run;
  const json = cli.json;

  beforeAll(async () => {
    ctl = await startTestController({ backend });
    cwd = await mkdtemp(join(tmpdir(), 'bmctl-cwd-'));
  });

  afterAll(async () => {
    await ctl?.stop();
    if (ctl) removeDataDir(ctl.dataDir);
    if (cwd) await rm(cwd, { recursive: true, force: true });
  });

  let switchId = '';

  it('registers a switch with the seed’s positional arguments', async () => {
    const added = await bmctl('switch', 'add', '10.0.0.2', 'netops', 'sw-secret', 'juniper', 'rack 1 top');

    expect(added).toMatchObject({ code: 0, stderr: '' });
    expect(added.stdout).toMatch(/^name\s+10\.0\.0\.2$/m);
    expect(added.stdout).toMatch(/^has_password\s+yes$/m);
    expect(added.stdout).not.toContain('sw-secret');

    const shown = await json('switch', 'show', '10.0.0.2');
    expect(shown).toMatchObject({
      name: '10.0.0.2',
      address: '10.0.0.2',
      driver: 'juniper',
      has_password: true,
    });
    expect(shown).not.toHaveProperty('password');
    switchId = String(shown.id);

    expect((await bmctl('switch', 'add', '--name=tor2', '--address=10.0.0.3', '--driver=noop')).code).toBe(0);
    const listed = await bmctl('switch', 'list', '--driver', 'noop');
    expect(listed.stdout).toMatch(
      /^NAME\s+ADDRESS\s+DRIVER\s+USERNAME\s+DESCRIPTION\ntor2\s+10\.0\.0\.3\s+noop\s+-\s+-\n$/,
    );
  });

  it('registers a node with the seed’s positional arguments and lists it', async () => {
    const added = await bmctl(
      'node',
      'add',
      '10.0.0.5',
      '52:54:00:12:34:56',
      '8',
      '16384',
      '100',
      '10.0.1.5',
      'admin',
      'ipmi-secret',
      switchId,
      'ge-0/0/5',
    );
    expect(added).toMatchObject({ code: 0, stderr: '' });
    expect(added.stdout).not.toContain('ipmi-secret');

    const shown = await bmctl('node', 'show', 'node-525400123456');
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/^switch\s+10\.0\.0\.2$/m);
    expect(shown.stdout).toMatch(/^has_bmc_password\s+yes$/m);
    expect(shown.stdout).toMatch(/^power_driver\s+ipmitool$/m);

    const listed = await bmctl('node', 'list');
    expect(listed.code).toBe(0);
    expect(listed.stdout.split('\n')[0]).toMatch(
      /^NAME\s+MAC\s+IP\s+CPUS\s+RAM_MB\s+DISK_GB\s+STATE\s+MAINT\s+SWITCH\s+PORT\s+POWER_DRIVER$/,
    );
    expect(listed.stdout).toMatch(
      /^node-525400123456\s+52:54:00:12:34:56\s+10\.0\.0\.5\s+8\s+16384\s+100\s+\S+\s+no\s+10\.0\.0\.2\s+ge-0\/0\/5\s+ipmitool$/m,
    );

    const nodes = await json<Record<string, unknown>[]>('node', 'list', '--switch', '10.0.0.2');
    expect(nodes).toHaveLength(1);
    expect(nodes[0]).toMatchObject({
      name: 'node-525400123456',
      mac: '52:54:00:12:34:56',
      ram_mb: 16384,
      switch_id: switchId,
      switch_port: 'ge-0/0/5',
      has_bmc_password: true,
      maintenance: false,
    });
    expect(nodes[0]).not.toHaveProperty('bmc_password');
    expect(String(nodes[0]?.provision_state)).toMatch(/^PROVISION_STATE_/);
  });

  it('takes a node’s fields as flags, the password from stdin, and a switch by name', async () => {
    const added = await json(
      'node',
      'add',
      '--name=n2',
      '--ip=10.0.0.6',
      '--mac=52-54-00-AB-CD-EF',
      '--cpus=4',
      '--ram=8192',
      '--disk=50',
      '--bmc-address=10.0.1.6',
      '--bmc-username=admin',
      '--bmc-password-file=-',
      '--power-driver=freeipmi',
      '--switch=tor2',
      '--switch-port=eth6',
    );
    expect(added).toMatchObject({
      name: 'n2',
      mac: '52:54:00:ab:cd:ef',
      power_driver: 'freeipmi',
      has_bmc_password: true,
    });
  });

  it('toggles maintenance and filters on it', async () => {
    const on = await json('node', 'maintenance', 'n2', 'on', '--reason', 'replacing a DIMM');
    expect(on).toMatchObject({ maintenance: true, maintenance_reason: 'replacing a DIMM' });
    expect(
      (await json<{ name: string }[]>('node', 'list', '--maintenance', 'true')).map((n) => n.name),
    ).toEqual(['n2']);

    const off = await json('node', 'maintenance', 'n2', 'off');
    expect(off).toMatchObject({ maintenance: false, maintenance_reason: '' });
    expect(await json('node', 'list', '--maintenance', 'true')).toEqual([]);
  });

  it('explains a bad MAC, an unknown switch and a duplicate MAC on one line, exit 1', async () => {
    const seedWith = (mac: string, sw: string) =>
      bmctl('node', 'add', '10.0.0.9', mac, '8', '16384', '100', '10.0.1.9', 'admin', 'pw', sw, 'ge-0/0/9');

    const badMac = await seedWith('52:54:00:zz:34:56', switchId);
    expect(badMac.code).toBe(1);
    expect(badMac.stdout).toBe('');
    expect(badMac.stderr).toMatch(
      /^bmctl: invalid argument: (.*; )?node\.mac: must be a [^\n]*MAC address[^\n]*\n$/,
    );

    const unknownSwitch = await seedWith('52:54:00:12:34:99', 'sw9');
    expect(unknownSwitch).toEqual({
      code: 1,
      stdout: '',
      stderr: 'bmctl: not found: switch "sw9" does not exist\n',
    });

    const duplicate = await seedWith('52:54:00:12:34:56', switchId);
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toMatch(/^bmctl: already exists: [^\n]*52:54:00:12:34:56[^\n]*\n$/);

    expect(await bmctl('switch', 'show', 'sw9')).toEqual({
      code: 1,
      stdout: '',
      stderr: 'bmctl: not found: switch "sw9" does not exist\n',
    });
  });

  it('refuses a wrong token', async () => {
    const result = await bmctl('switch', 'list', '--token', 'not-a-token');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^bmctl: unauthenticated: [^\n]*--token[^\n]*\n$/);
  });

  it('manages projects, flavors, hosts and aggregates', async () => {
    expect(await json('project', 'create', 'acme', '--isolated', '--description', 'Acme Corp')).toMatchObject(
      {
        name: 'acme',
        isolated: true,
      },
    );
    expect(
      await json(
        'flavor',
        'create',
        'bm.small',
        '--vcpus',
        '8',
        '--ram',
        '16384',
        '--disk',
        '100',
        '--spec',
        'gpu=none',
      ),
    ).toMatchObject({
      name: 'bm.small',
      vcpus: 8,
      ram_mb: 16384,
      disk_gb: 100,
      extra_specs: { gpu: 'none' },
    });
    expect(
      await json('host', 'add', 'hv1', '--vcpus', '64', '--ram', '262144', '--disk', '2000'),
    ).toMatchObject({
      name: 'hv1',
      vcpus: 64,
    });

    expect(await json('aggregate', 'create', 'rack1', 'zone-a')).toMatchObject({
      availability_zone: 'zone-a',
    });
    await json('aggregate', 'add-host', 'rack1', 'hv1');
    await json('aggregate', 'add-host', 'rack1', 'n2');
    await json('aggregate', 'set-metadata', 'rack1', 'ssd=true', 'gpu=a100');
    const aggregate = await json('aggregate', 'set-metadata', 'rack1', 'gpu', 'project_id=acme');
    expect(aggregate).toMatchObject({ name: 'rack1', hosts: ['hv1', 'n2'] });
    expect(Object.keys(aggregate.metadata as object).sort()).toEqual(['project_id', 'ssd']);

    const removed = await json('aggregate', 'remove-host', 'rack1', 'hv1');
    expect(removed).toMatchObject({ hosts: ['n2'] });

    const tables = await Promise.all(
      ['project', 'flavor', 'host', 'aggregate'].map(async (noun) => (await bmctl(noun, 'list')).stdout),
    );
    expect(tables.map((t) => t.split('\n')[1]?.split(/\s+/)[0])).toEqual([
      'acme',
      'bm.small',
      'hv1',
      'rack1',
    ]);
  });

  it('deletes what it created', async () => {
    expect(await bmctl('aggregate', 'delete', 'rack1')).toEqual({
      code: 1,
      stdout: '',
      stderr: 'bmctl: failed precondition: aggregate rack1 still has 1 host(s); remove them first\n',
    });
    await json('aggregate', 'remove-host', 'rack1', 'n2');
    for (const [noun, id] of [
      ['aggregate', 'rack1'],
      ['host', 'hv1'],
      ['flavor', 'bm.small'],
      ['project', 'acme'],
      ['node', 'n2'],
      ['node', 'node-525400123456'],
      ['switch', 'tor2'],
      ['switch', '10.0.0.2'],
    ] as const) {
      expect(await bmctl(noun, 'delete', id)).toEqual({
        code: 0,
        stdout: `${noun} ${id} deleted\n`,
        stderr: '',
      });
    }
    expect(await json('node', 'list')).toEqual([]);
    expect((await bmctl('node', 'show', 'n2')).stderr).toBe('bmctl: not found: node "n2" does not exist\n');
  });
});
