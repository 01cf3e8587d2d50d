/**
 * bmctl's network commands against a real controller and the Junos test switch: `network
 * create|list|show|delete`, `node network` and `switch port-status`, with the switch's own words
 * on stderr when it refuses.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeJunosSwitch } from '../fakes/junos-netconf-server.ts';
import { ed25519KeyPair } from '../fakes/ssh-keys.ts';
import { bmctlAgainst } from '../support/bmctl.ts';
import { removeDataDir, startTestController, type TestController } from '../support/controller.ts';

describe('bmctl network, node network and switch port-status', () => {
  let ctl: TestController;
  let cwd: string;
  let sw: FakeJunosSwitch;

  const cli = bmctlAgainst(() => ({ address: ctl.address, dataDir: ctl.dataDir }), {
    cwd: () => cwd,
    stdin: 'juniper123\n',
  });
  const bmctl = cli.run;
  const json = cli.json;

  beforeAll(async () => {
    ctl = await startTestController();
    cwd = await mkdtemp(join(tmpdir(), 'bmctl-net-'));
    const key = ed25519KeyPair();
    await writeFile(join(cwd, 'switch.key'), key.private, { mode: 0o600 });
    sw = await FakeJunosSwitch.start({
      syntax: 'port-mode',
      authorizedKey: key.public,
      ports: { 'ge-0/0/1': 100, 'ge-0/0/2': 100 },
      vlans: [
        { name: 'provisioning', id: 100 },
        { name: 'acme-a', id: 200 },
      ],
    });
  });

  afterAll(async () => {
    await ctl?.stop();
    if (ctl) removeDataDir(ctl.dataDir);
    await sw?.stop();
    if (cwd) await rm(cwd, { recursive: true, force: true });
  });

  it('registers a switch with a key file and driver options, pinning its host key', async () => {
    const added = await bmctl(
      'switch',
      'add',
      '--name',
      'tor1',
      '--address',
      sw.address,
      '--username',
      'netops',
      '--driver',
      'juniper',
      '--ssh-key-file',
      'switch.key',
      '--driver-option',
      'syntax=port-mode',
      '--driver-option',
      'confirm_timeout_s=120',
      '--description',
      'rack 1',
    );
    expect(added).toMatchObject({ code: 0, stderr: '' });
    expect(added.stdout).toMatch(/^has_ssh_private_key\s+yes$/m);
    expect(added.stdout).toMatch(/^driver_options\s+confirm_timeout_s=120, syntax=port-mode$/m);
    expect(added.stdout).not.toContain('PRIVATE KEY');

    const bad = await bmctl(
      'switch',
      'add',
      '10.0.0.9',
      'u',
      'p',
      'juniper',
      'x',
      '--driver-option',
      'syntax=els',
    );
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^bmctl: invalid argument: switch\.driver_options\.syntax: must be one of/);
  });

  it('creates, lists and shows networks', async () => {
    expect(await bmctl('project', 'create', 'acme')).toMatchObject({ code: 0 });
    const service = await json('network', 'create', 'provisioning', '--service', '--vlan', '100');
    expect(service).toMatchObject({ kind: 'NETWORK_KIND_SERVICE', vlan_id: 100, project_id: '' });
    await json('network', 'create', 'acme-a', '--project', 'acme', '--vlan', '200', '--bridge', 'br-acme');
    await json('network', 'create', 'ghost', '--project', 'acme', '--vlan', '999');

    const table = await bmctl('network', 'list');
    expect(table.stdout.split('\n')[0]).toMatch(/^NAME\s+KIND\s+PROJECT\s+VLAN\s+BRIDGE\s+DESCRIPTION$/);
    expect(table.stdout).toMatch(/^acme-a\s+project\s+acme\s+200\s+br-acme\s+-$/m);
    expect(table.stdout).toMatch(/^provisioning\s+service\s+-\s+100\s+-\s+-$/m);
    expect((await json<unknown[]>('network', 'list', '--kind', 'service')).length).toBe(1);
    expect((await bmctl('network', 'show', 'acme-a')).stdout).toMatch(/^project\s+acme$/m);

    const missing = await bmctl('network', 'create', 'x', '--project', 'acme');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("required option '--vlan <id>'");
  });

  it('moves a node’s port, says when it was already there, and reads the port back', async () => {
    expect(
      await bmctl(
        'node',
        'add',
        '10.0.1.1',
        '52:54:00:00:11:01',
        '4',
        '4096',
        '100',
        '10.0.2.1',
        'root',
        'x',
        'tor1',
        'ge-0/0/1',
      ),
    ).toMatchObject({ code: 0 });
    const moved = await bmctl('node', 'network', 'node-525400001101', 'acme-a');
    expect(moved).toEqual({
      code: 0,
      stdout: 'node node-525400001101: port ge-0/0/1 on switch tor1 moved to network acme-a\n',
      stderr: '',
    });
    expect(sw.vlansOf('ge-0/0/1')).toEqual(['200']);
    expect((await bmctl('node', 'network', 'node-525400001101', 'acme-a')).stdout).toContain(
      'already on network acme-a',
    );

    const status = await bmctl('switch', 'port-status', 'tor1', 'ge-0/0/1');
    expect(status.stdout).toMatch(/^mode\s+access$/m);
    expect(status.stdout).toMatch(/^vlan_ids\s+200$/m);
    expect(status.stdout).toMatch(/^network\s+acme-a$/m);
    expect(status.stdout).toMatch(/^in_sync\s+yes$/m);
    const shown = await json('node', 'show', 'node-525400001101');
    expect(shown).toMatchObject({ netboot_state: 'NETBOOT_STATE_UNSPECIFIED', network_error: '' });
    expect((await bmctl('node', 'show', 'node-525400001101')).stdout).toMatch(/^network_id\s+\S{36}$/m);
  });

  it('prints the switch’s refusal as one line and exits 1', async () => {
    const refused = await bmctl('node', 'network', 'node-525400001101', 'ghost');
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain('No vlan matches vlan tag 999 for interface ge-0/0/1.0');
    const inUse = await bmctl('network', 'delete', 'acme-a');
    expect(inUse.code).toBe(1);
    expect(inUse.stderr).toContain('network acme-a still has node ports on it');
    expect(await bmctl('node', 'network', 'node-525400001101', 'provisioning')).toMatchObject({ code: 0 });
    expect(await bmctl('network', 'delete', 'acme-a')).toMatchObject({
      code: 0,
      stdout: 'network acme-a deleted\n',
    });
  });
});
