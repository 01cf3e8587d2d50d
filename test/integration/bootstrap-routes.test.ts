import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDataDir, startTestController, type TestController } from '../support/controller.ts';

// What the bootstrap image downloads from the controller: the kernel and initramfs (iPXE), the agent
// and the agent's SHA-256 (the image's init). Small stand-in files; bootstrap.test.ts boots the real ones.

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

describe('bootstrap files over HTTP', () => {
  let ctl: TestController;
  let dir = '';
  let agentBinary = '';
  let bootDir = '';
  const get = (path: string, init?: RequestInit) => fetch(`http://${ctl.httpAddress}${path}`, init);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ingot-bootstrap-routes-'));
    agentBinary = join(dir, 'ingot-agent');
    bootDir = join(dir, 'bootstrap');
    mkdirSync(bootDir);
    writeFileSync(agentBinary, '#!/bin/sh\necho agent version 1\n');
    writeFileSync(join(bootDir, 'vmlinuz'), 'a kernel, not really');
    writeFileSync(join(bootDir, 'initrd.img'), 'an initramfs, not really');
    ctl = await startTestController({ args: ['--agent-binary', agentBinary, '--bootstrap-dir', bootDir] });
  });

  afterAll(async () => {
    await ctl?.stop();
    if (ctl) removeDataDir(ctl.dataDir);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("publishes the agent's SHA-256 in sha256sum's format and as a header, and follows a new build", async () => {
    const sum = await get('/agent/ingot-agent.sha256');
    expect(sum.status).toBe(200);
    expect(await sum.text()).toBe(`${sha256('#!/bin/sh\necho agent version 1\n')}  ingot-agent\n`);
    const agent = await get('/agent/ingot-agent');
    const body = Buffer.from(await agent.arrayBuffer());
    expect(agent.headers.get('x-checksum-sha256')).toBe(sha256(body));
    expect((await get('/agent/ingot-agent.sha256', { method: 'HEAD' })).status).toBe(200);

    // A rebuilt agent (other size and mtime) gets its own checksum.
    writeFileSync(agentBinary, '#!/bin/sh\necho agent version 22\n');
    utimesSync(agentBinary, new Date(), new Date(Date.now() + 5000));
    expect(await (await get('/agent/ingot-agent.sha256')).text()).toBe(
      `${sha256('#!/bin/sh\necho agent version 22\n')}  ingot-agent\n`,
    );
    expect((await get('/agent/ingot-agent.sha256', { method: 'POST' })).status).toBe(405);
  });

  it('serves the kernel and the initramfs, with ranges', async () => {
    const kernel = await get('/boot/vmlinuz');
    expect(kernel.status).toBe(200);
    expect(await kernel.text()).toBe('a kernel, not really');
    const part = await get('/boot/initrd.img', { headers: { range: 'bytes=3-11' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe('bytes 3-11/24');
    expect(await part.text()).toBe('initramfs');
    expect((await get('/boot/initrd.img', { headers: { range: 'bytes=99-' } })).status).toBe(416);
    expect((await get('/boot/vmlinuz', { method: 'PUT' })).status).toBe(405);
    expect((await get('/boot/other')).status).toBe(404);
  });

  it('says how to build what is missing', async () => {
    rmSync(join(bootDir, 'initrd.img'));
    const missing = await get('/boot/initrd.img');
    expect(missing.status).toBe(404);
    expect(await missing.text()).toContain('make bootstrap');
    rmSync(agentBinary);
    const noAgent = await get('/agent/ingot-agent.sha256');
    expect(noAgent.status).toBe(404);
    expect(await noAgent.text()).toContain('make agent');
  });
});
