import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bmctlAgainst } from '../support/bmctl.ts';
import { BACKENDS, removeDataDir, startTestController, type TestController } from '../support/controller.ts';

// The seed's flow (`nova boot --image … --flavor … --hint compute_type=bare_metal <name>`) with
// bmctl only, against a real controller: inventory, boots, the scheduler's trace, no valid host,
// and a delete that gives the node back.

describe.each(BACKENDS)('bmctl boot and schedule against a controller on %s', (backend) => {
  let ctl: TestController;
  let cwd: string;

  const cli = bmctlAgainst(() => ({ address: ctl.address, dataDir: ctl.dataDir }), {
    cwd: () => cwd,
  });
  const bmctl = cli.run;
  const json = cli.json;
  const ok = cli.ok;

  /** The value of one FIELD/VALUE row of `show`-style output. */
  function field(table: string, name: string): string | undefined {
    return new RegExp(`^${name}\\s+(.*)$`, 'm').exec(table)?.[1];
  }

  const boot = (name: string, ...more: string[]) =>
    bmctl('boot', '--image', 'ubuntu-24.04', '--flavor', 'bm.small', ...more, name);

  beforeAll(async () => {
    ctl = await startTestController({ backend });
    cwd = await mkdtemp(join(tmpdir(), 'bmctl-cwd-'));
  });

  afterAll(async () => {
    await ctl?.stop();
    if (ctl) removeDataDir(ctl.dataDir);
    if (cwd) await rm(cwd, { recursive: true, force: true });
  });

  it('builds the inventory: projects, a default and a dedicated aggregate, hosts, nodes, a flavor', async () => {
    await ok('project', 'create', 'secure', '--isolated', '--description', 'keeps to its own hosts');
    await ok('project', 'create', 'acme');
    await ok('flavor', 'create', 'bm.small', '--vcpus', '4', '--ram', '8192', '--disk', '100');

    await ok('host', 'add', 'hv-default1', '--vcpus', '64', '--ram', '262144', '--disk', '2000');
    await ok('host', 'add', 'hv-secure1', '--vcpus', '64', '--ram', '262144', '--disk', '2000');
    await ok('aggregate', 'create', 'default');
    await ok('aggregate', 'add-host', 'default', 'hv-default1');
    await ok('aggregate', 'create', 'secure-agg');
    await ok('aggregate', 'add-host', 'secure-agg', 'hv-secure1');
    await ok('aggregate', 'set-metadata', 'secure-agg', 'project_id=secure');

    await ok('switch', 'add', '--name=tor1', '--address=10.0.0.2', '--driver=noop');
    // bm1 is smaller (the least-waste weigher prefers it) and dedicated to secure; bm2 is for anyone.
    const seedNode = (n: number, cpus: string, ramMb: string, diskGb: string) => [
      `10.0.0.${n}`,
      `52:54:00:00:00:${n}`,
      cpus,
      ramMb,
      diskGb,
      `10.0.1.${n}`,
      'admin',
      'ipmi-secret',
      'tor1',
      `ge-0/0/${n}`,
    ];
    await ok('node', 'add', ...seedNode(11, '8', '16384', '200'), '--name=bm1');
    await ok('node', 'add', ...seedNode(12, '32', '131072', '900'), '--name=bm2');
    await ok('aggregate', 'add-host', 'secure-agg', 'bm1');

    const nodes = await json<{ name: string; provision_state: string }[]>('node', 'list');
    expect(nodes.map((n) => [n.name, n.provision_state])).toEqual([
      ['bm1', 'PROVISION_STATE_AVAILABLE'],
      ['bm2', 'PROVISION_STATE_AVAILABLE'],
    ]);
  });

  it('needs --project when an admin boots', async () => {
    expect(await boot('web1')).toEqual({
      code: 1,
      stdout: '',
      stderr: 'bmctl: invalid argument: request.project: is required for admins (a project id or name)\n',
    });
  });

  it('boots for the isolated project into its dedicated aggregate', async () => {
    const out = await ok(
      'boot',
      '--image',
      'ubuntu-24.04',
      '--flavor',
      'bm.small',
      '--project',
      'secure',
      'web1',
    );

    expect(field(out, 'host')).toBe('host/hv-secure1');
    expect(field(out, 'project')).toBe('secure');
    expect(field(out, 'flavor')).toBe('bm.small');
    expect(field(out, 'state')).toBe('scheduled');
    expect(field(out, 'image')).toBe('ubuntu-24.04');
    expect(field(out, 'vcpus')).toBe('4');
  });

  it('boots the same project on a bare-metal node with --hint compute_type=bare_metal', async () => {
    const booted = await json(
      'boot',
      '--image=ubuntu-24.04',
      '--flavor=bm.small',
      '--hint',
      'compute_type=bare_metal',
      '--project=secure',
      'db1',
    );

    expect(booted).toMatchObject({
      name: 'db1',
      host_kind: 'node',
      host_name: 'bm1',
      hints: { compute_type: 'bare_metal' },
      state: 'INSTANCE_STATE_SCHEDULED',
    });
    expect(await json('node', 'show', 'bm1')).toMatchObject({ instance_id: booted.id });
  });

  it('boots a project without an aggregate into the default aggregate', async () => {
    const out = await ok(
      ...['boot', '--image', 'ubuntu-24.04', '--flavor', 'bm.small', '--project', 'acme', 'web1'],
    );

    expect(field(out, 'host')).toBe('host/hv-default1');
    expect(field(out, 'project')).toBe('acme');
  });

  it('lists and shows instances with project and flavor names', async () => {
    const table = (await ok('instance', 'list')).split('\n');
    expect(table[0]).toMatch(/^NAME\s+STATE\s+HOST\s+FLAVOR\s+IMAGE\s+PROJECT$/);
    expect(table.slice(1, -1).sort()).toEqual([
      expect.stringMatching(/^db1\s+scheduled\s+node\/bm1\s+bm\.small\s+ubuntu-24\.04\s+secure$/),
      expect.stringMatching(/^web1\s+scheduled\s+host\/hv-default1\s+bm\.small\s+ubuntu-24\.04\s+acme$/),
      expect.stringMatching(/^web1\s+scheduled\s+host\/hv-secure1\s+bm\.small\s+ubuntu-24\.04\s+secure$/),
    ]);

    const secure = await json<{ name: string }[]>('instance', 'list', '--project', 'secure');
    expect(secure.map((i) => i.name).sort()).toEqual(['db1', 'web1']);

    const shown = await json('instance', 'show', 'web1', '--project', 'acme');
    expect(shown).toMatchObject({ name: 'web1', host_name: 'hv-default1' });
    expect(await json('instance', 'show', String(shown.id))).toEqual(shown);
    expect(await bmctl('instance', 'show', 'web1')).toEqual({
      code: 1,
      stdout: '',
      stderr: 'bmctl: invalid argument: project: is required for admins (a project id or name)\n',
    });
  });

  it('explains a bare-metal placement filter by filter, claiming nothing', async () => {
    const result = await bmctl(
      ...['schedule', '--flavor', 'bm.small', '--hint', 'compute_type=bare_metal', '--project', 'acme'],
      '--explain',
    );

    expect(result).toMatchObject({ code: 0, stderr: '' });
    const [answer, trace] = result.stdout.split('\n\n');
    expect(answer).toMatch(/^KIND\s+NAME\s+WEIGHT\nnode\s+bm2\s+\d+\.\d{3}$/);
    const lines = trace?.split('\n') ?? [];
    expect(lines[0]).toMatch(/^PlacementFilter\s+4 → 1$/);
    expect(lines.slice(1, 4).sort()).toEqual([
      expect.stringMatching(/^ {2}bm1\s+in aggregate secure-agg, dedicated to another project$/),
      expect.stringMatching(
        /^ {2}hv-default1\s+a hypervisor host; compute_type=bare_metal asks for a bare-metal node$/,
      ),
      expect.stringMatching(/^ {2}hv-secure1\s+in aggregate secure-agg, dedicated to another project$/),
    ]);
    expect(lines.slice(4)).toEqual([
      expect.stringMatching(/^VcpuFilter\s+1 → 1$/),
      expect.stringMatching(/^RamFilter\s+1 → 1$/),
      expect.stringMatching(/^DiskFilter\s+1 → 1$/),
      expect.stringMatching(/^AggregateInstanceExtraSpecsFilter\s+1 → 1$/),
      expect.stringMatching(/^AvailabilityZoneFilter\s+1 → 1$/),
      expect.stringMatching(/^NodeStateFilter\s+1 → 1$/),
      '',
    ]);

    const response = await json(
      ...['schedule', '--flavor=bm.small', '--hint=compute_type=bare_metal', '--project=acme', '--explain'],
    );
    expect(response).toMatchObject({
      destinations: [{ kind: 'node', name: 'bm2' }],
      candidates: 1,
      no_valid_host: '',
    });
    expect((response.trace as Record<string, unknown>[])[0]).toMatchObject({
      filter: 'PlacementFilter',
      hosts_in: 4,
      hosts_out: 1,
    });
    expect(await json('node', 'show', 'bm2')).toMatchObject({ instance_id: '' });
  });

  it('fails a boot with no host left, naming the filter, and boots again once an instance is deleted', async () => {
    const bareMetal = ['--hint', 'compute_type=bare_metal', '--project', 'acme'];
    const first = await ok('boot', '--image', 'ubuntu-24.04', '--flavor', 'bm.small', ...bareMetal, 'batch1');
    expect(field(first, 'host')).toBe('node/bm2');

    const refused = await boot('batch2', ...bareMetal);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(
      /^bmctl: no valid host: NodeStateFilter rejected the last 1 host\(s\); closest: bm2 \(already claimed by instance [0-9a-f-]+\)\n$/,
    );

    const asked = await bmctl('schedule', '--flavor', 'bm.small', ...bareMetal, '--explain');
    expect(asked).toMatchObject({ code: 0, stderr: '' });
    expect(asked.stdout).toMatch(/^no valid host: NodeStateFilter rejected the last 1 host\(s\)[^\n]*\n\n/);
    expect(asked.stdout).toMatch(
      /^NodeStateFilter\s+1 → 0\n {2}bm2 {2}already claimed by instance [0-9a-f-]+\n$/m,
    );

    expect(await bmctl('instance', 'delete', 'batch1', '--project', 'acme')).toEqual({
      code: 0,
      stdout: 'instance batch1 deleted\n',
      stderr: '',
    });
    expect(await json('node', 'show', 'bm2')).toMatchObject({ instance_id: '' });

    const again = await ok('boot', '--image', 'ubuntu-24.04', '--flavor', 'bm.small', ...bareMetal, 'batch2');
    expect(field(again, 'host')).toBe('node/bm2');
    expect((await bmctl('instance', 'show', 'batch1', '--project', 'acme')).stderr).toMatch(
      /^bmctl: not found: instance "batch1" does not exist\n$/,
    );
  });
});
