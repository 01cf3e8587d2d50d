import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zstdCompressSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AgentProcess,
  createLoopDevice,
  ensureAgentBinary,
  type LoopDevice,
  makeImage,
  readDevice,
} from '../support/agent.ts';
import { bmctlAgainst } from '../support/bmctl.ts';
import {
  InventoryApi,
  removeDataDir,
  startTestController,
  type TestController,
} from '../support/controller.ts';

// bmctl's image, task and agent-token commands against a real controller and the agent executable:
// the walkthrough, `bmctl task create deploy … --watch` included.

const MiB = 1 << 20;
const NODE_MAC = '52:54:00:a9:00:21';

describe('bmctl image, task and node agent-token', () => {
  let ctl: TestController;
  let cwd: string;
  let disk: LoopDevice;
  let agent: AgentProcess | undefined;
  const raw = makeImage(6 * MiB, 21);

  const bmctl = bmctlAgainst(() => ({ address: ctl.address, dataDir: ctl.dataDir }), {
    cwd: () => cwd,
  }).run;

  async function json<T = Record<string, unknown>>(...argv: string[]): Promise<T> {
    const result = await bmctl(...argv, '-o', 'json');
    expect(result, `bmctl ${argv.join(' ')}`).toMatchObject({ code: 0, stderr: '' });
    return JSON.parse(result.stdout) as T;
  }

  beforeAll(async () => {
    await ensureAgentBinary();
    ctl = await startTestController();
    cwd = await mkdtemp(join(tmpdir(), 'bmctl-images-'));
    await writeFile(join(cwd, 'disk.raw.zst'), zstdCompressSync(raw));
    disk = await createLoopDevice(16 * MiB);
    const inventory = new InventoryApi(ctl.address, ctl.token);
    for (const [name, mac, octet] of [
      ['n1', NODE_MAC, 1],
      ['n2', '52:54:00:a9:00:22', 2],
    ] as const) {
      await inventory.call('createNode', {
        node: {
          name,
          ip: `10.9.4.${octet}`,
          mac,
          cpus: 1,
          ramMb: 512,
          diskGb: 1,
          bmcAddress: `10.9.5.${octet}`,
          bmcUsername: 'a',
        },
      });
    }
  });

  afterAll(async () => {
    await agent?.stop();
    await ctl?.stop();
    await disk?.detach();
    if (cwd) await rm(cwd, { recursive: true, force: true });
    if (ctl) removeDataDir(ctl.dataDir);
  });

  it('creates an image from a file, shows, lists and signs a URL for it', async () => {
    const created = await bmctl('image', 'create', 'ubuntu', '--file', 'disk.raw.zst');
    expect(created).toMatchObject({ code: 0, stderr: '' });
    expect(created.stdout).toMatch(/^status\s+active$/m);
    expect(created.stdout).toMatch(/^disk_format\s+zstd$/m);
    expect(created.stdout).toMatch(new RegExp(`^virtual_size_bytes\\s+${raw.length}$`, 'm'));

    const shown = await json('image', 'show', 'ubuntu');
    expect(shown).toMatchObject({
      name: 'ubuntu',
      status: 'IMAGE_STATUS_ACTIVE',
      disk_format: 'DISK_FORMAT_RAW_ZSTD',
    });
    expect((await bmctl('image', 'list')).stdout).toMatch(/^ubuntu\s+active\s+zstd\s+linux\s/m);

    const { url } = await json<{ url: string }>('image', 'url', 'ubuntu', '--ttl', '5m');
    const body = Buffer.from(await (await fetch(url)).arrayBuffer());
    expect(createHash('sha256').update(body).digest('hex')).toBe(shown.sha256);

    expect(await bmctl('image', 'url', 'ubuntu', '--ttl', 'soon')).toMatchObject({ code: 2 });
    const missing = await bmctl('image', 'create', 'nothing', '--file', 'no-such-file');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read no-such-file/);
    const dup = await bmctl('image', 'create', 'ubuntu', '--file', 'disk.raw.zst');
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/already exists/);
    const wrongSum = await bmctl(
      'image',
      'create',
      'checked',
      '--file',
      'disk.raw.zst',
      '--sha256',
      '0'.repeat(64),
    );
    expect(wrongSum.code).toBe(1);
    expect(wrongSum.stderr).toMatch(/not the expected/);
  });

  it('mints an agent token and deploys with `task create deploy --watch`', async () => {
    const token = (await bmctl('node', 'agent-token', 'n1')).stdout.trim();
    expect(token).toMatch(/^ingot_agent_/);
    agent = AgentProcess.start({
      controller: ctl.address,
      token,
      tokenFlag: true,
      disks: [disk.path],
      macs: [NODE_MAC],
    });
    await agent.waitFor('connected', (l) => l.msg === 'connected to the controller');

    const deployed = await bmctl(
      'task',
      'create',
      'deploy',
      '--node',
      'n1',
      '--image',
      'ubuntu',
      '--disk',
      disk.path,
      '--watch',
    );
    expect(deployed, deployed.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(deployed.stdout).toMatch(/deploy \S+ running \(attempt 1\)/);
    expect(deployed.stdout).toMatch(/deploy \S+ succeeded: sha256 [0-9a-f]{64}/);
    expect((await readDevice(disk.path, 0, raw.length)).equals(raw)).toBe(true);

    const id = /deploy (\S+) succeeded/.exec(deployed.stdout)?.[1] ?? '';
    expect((await bmctl('task', 'list', '--node', 'n1', '--state', 'succeeded')).stdout).toContain(id);
    expect(await json('task', 'show', id)).toMatchObject({
      state: 'TASK_STATE_SUCCEEDED',
      kind: 'TASK_KIND_DEPLOY',
    });
    const watchedAgain = await bmctl('task', 'watch', id);
    expect(watchedAgain.code).toBe(0);

    expect(await bmctl('image', 'delete', 'ubuntu')).toMatchObject({
      code: 0,
      stdout: 'image ubuntu deleted\n',
    });
  });

  it('reports a failed task with exit 1, refuses bad command lines, and cancels', async () => {
    const created = await json<{ id: string }>('task', 'create', 'poweroff', '--node', 'n1');
    const watched = await bmctl('task', 'watch', created.id);
    expect(watched.code).toBe(1);
    expect(watched.stderr).toMatch(/failed: POWER_COMMAND_UNSET/);

    expect((await bmctl('task', 'create', 'wipe', '--node', 'n1')).code).toBe(2);
    expect((await bmctl('task', 'create', 'inspect', '--node', 'n1', '--disk', '/dev/sda')).code).toBe(2);
    expect((await bmctl('task', 'create', 'dance', '--node', 'n1')).code).toBe(2);

    const queued = await json<{ id: string }>('task', 'create', 'inspect', '--node', 'n2');
    expect(await json('task', 'cancel', queued.id)).toMatchObject({ state: 'TASK_STATE_CANCELLED' });
    const again = await bmctl('task', 'cancel', queued.id);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already cancelled/);
  });
});
