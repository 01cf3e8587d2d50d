import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskFormat, ImageStatus, ImageVisibility } from '../../build/gen/ingot/v1/image.ts';
import { UrlSigner } from '../../controller/src/images/url-signer.ts';
import { SecretBox } from '../../controller/src/store/secrets.ts';
import { createToken } from '../../controller/src/store/tokens.ts';
import { imageApi, makeImage, taskApi, uploadImage } from '../support/agent.ts';
import {
  BACKENDS,
  InventoryApi,
  removeDataDir,
  startTestController,
  type TestController,
} from '../support/controller.ts';

// ImageService over gRPC and the image routes of the controller's HTTP listener, on both databases.

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One HTTP request with a raw path (no normalisation), so traversal attempts reach the server as written. */
function http(
  address: string,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: Buffer } = {},
): Promise<HttpResult> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(':')),
    Number(address.slice(address.lastIndexOf(':') + 1)),
  ];
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe.each(BACKENDS)('images on %s', (backend) => {
  let ctl: TestController;
  let binDir = '';
  const images = () => imageApi(ctl.address, ctl.token);
  const raw = makeImage(3 << 20, 9);

  async function create(name: string, format: DiskFormat = DiskFormat.DISK_FORMAT_RAW) {
    return images().call('createImage', { image: { name, diskFormat: format } });
  }

  /** The path and query of a signed URL, for requests against the listener itself. */
  async function signedPath(id: string): Promise<string> {
    const { url } = await images().call('createImageUrl', { id });
    const parsed = new URL(url);
    return `${parsed.pathname}${parsed.search}`;
  }

  beforeAll(async () => {
    binDir = mkdtempSync(join(tmpdir(), 'ingot-agent-bin-'));
    const agentBinary = join(binDir, 'ingot-agent');
    writeFileSync(agentBinary, Buffer.from('#!/bin/sh\necho not really an agent\n'));
    ctl = await startTestController({ backend, args: ['--agent-binary', agentBinary] });
  });

  afterAll(async () => {
    await ctl?.stop();
    if (ctl) removeDataDir(ctl.dataDir);
    if (binDir) removeDataDir(binDir);
  });

  it('stores raw, gzip and zstd uploads with their size, virtual size and digest', async () => {
    for (const [name, format, data] of [
      ['up-raw', DiskFormat.DISK_FORMAT_RAW, raw],
      ['up-gzip', DiskFormat.DISK_FORMAT_RAW_GZIP, gzipSync(raw)],
      ['up-zstd', DiskFormat.DISK_FORMAT_RAW_ZSTD, zstdCompressSync(raw)],
    ] as const) {
      const created = await create(name, format);
      expect(created.status).toBe(ImageStatus.IMAGE_STATUS_QUEUED);
      const image = await uploadImage(
        ctl.address,
        ctl.token,
        { id: name, expectedSha256: sha256(data) },
        data,
        300_000,
      );
      expect(image).toMatchObject({
        name,
        diskFormat: format,
        status: ImageStatus.IMAGE_STATUS_ACTIVE,
        sizeBytes: data.length,
        virtualSizeBytes: raw.length,
        sha256: sha256(data),
        visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC,
      });
    }
    const { images: listed } = await images().call('listImages', {});
    expect(listed.map((i) => i.name)).toEqual(expect.arrayContaining(['up-raw', 'up-gzip', 'up-zstd']));
  });

  it('refuses bad uploads, marks the image KILLED and takes a retry', async () => {
    await create('bad-sum');
    const mismatch = await uploadImage(
      ctl.address,
      ctl.token,
      { id: 'bad-sum', expectedSha256: '0'.repeat(64) },
      raw,
    ).catch((e) => e);
    expect(mismatch).toMatchObject({ code: status.INVALID_ARGUMENT, reason: 'IMAGE_CHECKSUM_MISMATCH' });
    const killed = await images().call('getImage', { id: 'bad-sum' });
    expect(killed.status).toBe(ImageStatus.IMAGE_STATUS_KILLED);
    expect(killed.statusReason).toMatch(/not the expected/);
    const retried = await uploadImage(ctl.address, ctl.token, { id: 'bad-sum' }, raw);
    expect(retried.status).toBe(ImageStatus.IMAGE_STATUS_ACTIVE);

    const again = await uploadImage(ctl.address, ctl.token, { id: 'bad-sum' }, raw).catch((e) => e);
    expect(again).toMatchObject({ code: status.FAILED_PRECONDITION, reason: 'IMAGE_NOT_UPLOADABLE' });

    await create('not-gzip', DiskFormat.DISK_FORMAT_RAW_GZIP);
    const invalid = await uploadImage(ctl.address, ctl.token, { id: 'not-gzip' }, raw).catch((e) => e);
    expect(invalid).toMatchObject({ code: status.INVALID_ARGUMENT, reason: 'IMAGE_DATA_INVALID' });
    await create('truncated', DiskFormat.DISK_FORMAT_RAW_ZSTD);
    const zst = zstdCompressSync(raw);
    const cut = await uploadImage(
      ctl.address,
      ctl.token,
      { id: 'truncated' },
      zst.subarray(0, zst.length - 100),
    ).catch((e) => e);
    expect(cut).toMatchObject({ reason: 'IMAGE_DATA_INVALID' });
    await create('empty');
    expect(
      await uploadImage(ctl.address, ctl.token, { id: 'empty' }, Buffer.alloc(0)).catch((e) => e),
    ).toMatchObject({
      reason: 'IMAGE_EMPTY',
    });
    expect(await uploadImage(ctl.address, ctl.token, { id: 'no-such' }, raw).catch((e) => e)).toMatchObject({
      code: status.NOT_FOUND,
    });

    expect(await images().fail('createImage', { image: { name: 'bad-sum' } })).toMatchObject({
      code: status.ALREADY_EXISTS,
    });
    expect(await images().fail('createImage', { image: { name: '-bad' } })).toMatchObject({
      violations: [{ field: 'image.name' }],
    });
  });

  it('takes uploads over HTTP PUT with a bearer token', async () => {
    const created = await create('put-img');
    const path = `/v1/images/${created.id}/file`;
    expect((await http(ctl.httpAddress, path, { method: 'PUT', body: raw })).status).toBe(401);
    const wrong = await http(ctl.httpAddress, path, {
      method: 'PUT',
      body: raw,
      headers: { authorization: `Bearer ${ctl.token}`, 'x-image-sha256': 'f'.repeat(64) },
    });
    expect(wrong.status).toBe(400);
    expect(JSON.parse(wrong.body.toString())).toMatchObject({ reason: 'IMAGE_CHECKSUM_MISMATCH' });
    const ok = await http(ctl.httpAddress, '/v1/images/put-img/file', {
      method: 'PUT',
      body: raw,
      headers: { authorization: `Bearer ${ctl.token}`, 'x-image-sha256': sha256(raw) },
    });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body.toString())).toMatchObject({
      status: 'active',
      sha256: sha256(raw),
      size_bytes: raw.length,
    });
  });

  it('serves signed URLs whole and in ranges, and nothing without a valid signature', async () => {
    const image = await images().call('getImage', { id: 'up-raw' });
    const path = await signedPath(image.id);

    const whole = await http(ctl.httpAddress, path);
    expect(whole.status).toBe(200);
    expect(whole.headers['content-length']).toBe(String(raw.length));
    expect(whole.headers['accept-ranges']).toBe('bytes');
    expect(sha256(whole.body)).toBe(image.sha256);

    const part = await http(ctl.httpAddress, path, { headers: { range: 'bytes=1000-1999' } });
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 1000-1999/${raw.length}`);
    expect(part.headers['content-length']).toBe('1000');
    expect(part.body.equals(raw.subarray(1000, 2000))).toBe(true);
    const tail = await http(ctl.httpAddress, path, { headers: { range: 'bytes=-16' } });
    expect(tail.body.equals(raw.subarray(raw.length - 16))).toBe(true);
    const open = await http(ctl.httpAddress, path, { headers: { range: `bytes=${raw.length - 5}-` } });
    expect(open.body.equals(raw.subarray(raw.length - 5))).toBe(true);
    const beyond = await http(ctl.httpAddress, path, { headers: { range: `bytes=${raw.length}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers['content-range']).toBe(`bytes */${raw.length}`);
    const stale = await http(ctl.httpAddress, path, {
      headers: { range: 'bytes=0-9', 'if-range': '"other"' },
    });
    expect(stale.status).toBe(200);
    const head = await http(ctl.httpAddress, path, { method: 'HEAD' });
    expect(head).toMatchObject({ status: 200, body: Buffer.alloc(0) });
    expect(head.headers['content-length']).toBe(String(raw.length));

    // Bound to one image: the same signature on another image's path is refused.
    const other = await images().call('getImage', { id: 'up-gzip' });
    expect((await http(ctl.httpAddress, path.replace(image.id, other.id))).status).toBe(403);
    // One character of the signature changed (to another one: a signature may start with `A`).
    const tampered = path.replace(/sig=(.)/, (_, c: string) => `sig=${c === 'A' ? 'B' : 'A'}`);
    expect((await http(ctl.httpAddress, tampered)).status).toBe(403);
    expect((await http(ctl.httpAddress, path.replace(/expires=\d+/, 'expires=9999999999'))).status).toBe(403);
    expect((await http(ctl.httpAddress, `/v1/images/${image.id}/file`)).status).toBe(403);
    // Expired: signed with the controller's own key, an hour ago.
    const signer = new UrlSigner(
      SecretBox.fromFile(join(ctl.dataDir, 'secret.key'), { create: false }).derive('image-url-signing'),
    );
    const old = signer.sign(image.id, new Date(Date.now() - 3600_000));
    expect(
      (await http(ctl.httpAddress, `/v1/images/${image.id}/file?expires=${old.expires}&sig=${old.sig}`))
        .status,
    ).toBe(403);
    const fresh = signer.sign(image.id, new Date(Date.now() + 3600_000));
    expect(
      (await http(ctl.httpAddress, `/v1/images/${image.id}/file?expires=${fresh.expires}&sig=${fresh.sig}`))
        .status,
    ).toBe(200);

    // Nothing but an image id ever becomes a file name.
    for (const attempt of [
      '/v1/images/..%2F..%2Fsecret.key/file',
      '/v1/images/../../secret.key/file',
      '/v1/images/%2e%2e/file',
      '/v1/images/secret.key/file',
      '/v1/images/..%2fdb/file?expires=9999999999&sig=x',
    ]) {
      const result = await http(ctl.httpAddress, attempt);
      expect([403, 404], attempt).toContain(result.status);
      expect(result.body.toString()).not.toMatch(/^[A-Za-z0-9+/=]{40,}$/m);
    }

    const queued = await create('not-yet');
    expect(await images().fail('createImageUrl', { id: queued.id })).toMatchObject({
      code: status.FAILED_PRECONDITION,
      reason: 'IMAGE_NOT_ACTIVE',
    });
    expect(
      await images().fail('createImageUrl', { id: 'up-raw', ttl: { seconds: 30 * 86400, nanos: 0 } }),
    ).toMatchObject({
      violations: [{ field: 'ttl' }],
    });
  });

  it('shows members their project’s images and the public ones, and lets only admins publish', async () => {
    const inventory = new InventoryApi(ctl.address, ctl.token);
    const alpha = await inventory.call('createProject', { project: { name: 'alpha' } });
    const beta = await inventory.call('createProject', { project: { name: 'beta' } });
    const alice = await createToken(ctl.db.fork(), {
      role: 'member',
      projectId: alpha.id,
      description: 'alice',
    });
    const bob = await createToken(ctl.db.fork(), { role: 'member', projectId: beta.id, description: 'bob' });
    const asAlice = imageApi(ctl.address, alice);

    const mine = await asAlice.call('createImage', { image: { name: 'alpha-img' } });
    expect(mine).toMatchObject({ projectId: alpha.id, visibility: ImageVisibility.IMAGE_VISIBILITY_PROJECT });
    await uploadImage(ctl.address, alice, { id: 'alpha-img' }, raw);
    expect(
      await asAlice.fail('createImage', {
        image: { name: 'pub', visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC },
      }),
    ).toMatchObject({ code: status.PERMISSION_DENIED });
    expect(await asAlice.fail('createImage', { image: { name: 'x' }, project: 'beta' })).toMatchObject({
      code: status.PERMISSION_DENIED,
    });

    const asBob = imageApi(ctl.address, bob);
    expect(await asBob.fail('getImage', { id: mine.id })).toMatchObject({ code: status.NOT_FOUND });
    expect(await asBob.fail('createImageUrl', { id: 'alpha-img' })).toMatchObject({ code: status.NOT_FOUND });
    expect((await asBob.call('getImage', { id: 'up-raw' })).name).toBe('up-raw');
    expect(await asBob.fail('deleteImage', { id: 'up-raw' })).toMatchObject({
      code: status.PERMISSION_DENIED,
    });
    const bobSees = (await asBob.call('listImages', {})).images.map((i) => i.name);
    expect(bobSees).toContain('up-raw');
    expect(bobSees).not.toContain('alpha-img');
    expect((await asAlice.call('listImages', {})).images.map((i) => i.name)).toContain('alpha-img');

    // Same name in another project is another image.
    await asBob.call('createImage', { image: { name: 'alpha-img' } });
    expect(
      (
        await images()
          .call('createImage', { image: { name: 'alpha-img' }, project: 'alpha' })
          .catch((e) => e)
      ).code,
    ).toBe(status.ALREADY_EXISTS);
  });

  it('keeps an image while a task deploys it, then deletes row and file', async () => {
    await new InventoryApi(ctl.address, ctl.token).call('createNode', {
      node: {
        name: 'img-node',
        ip: '10.7.0.1',
        mac: '52:54:00:a7:00:01',
        cpus: 1,
        ramMb: 512,
        diskGb: 1,
        bmcAddress: '10.7.1.1',
        bmcUsername: 'a',
      },
    });
    const image = await images().call('getImage', { id: 'up-zstd' });
    const path = await signedPath(image.id);
    const task = await taskApi(ctl.address, ctl.token).call('createTask', {
      node: 'img-node',
      spec: { deploy: { image: 'up-zstd', disk: '/dev/sda' } },
    });
    expect(await images().fail('deleteImage', { id: 'up-zstd' })).toMatchObject({
      code: status.FAILED_PRECONDITION,
      reason: 'IMAGE_IN_USE',
    });
    await taskApi(ctl.address, ctl.token).call('cancelTask', { id: task.id });
    await images().call('deleteImage', { id: 'up-zstd' });
    expect(existsSync(join(ctl.dataDir, 'images', image.id))).toBe(false);
    expect((await http(ctl.httpAddress, path)).status).toBe(404);
    expect(await images().fail('getImage', { id: 'up-zstd' })).toMatchObject({ code: status.NOT_FOUND });
  });

  it('serves the agent executable', async () => {
    const whole = await http(ctl.httpAddress, '/agent/ingot-agent');
    expect(whole.status).toBe(200);
    expect(whole.body.toString()).toContain('not really an agent');
    const part = await http(ctl.httpAddress, '/agent/ingot-agent', { headers: { range: 'bytes=0-8' } });
    expect(part).toMatchObject({ status: 206 });
    expect(part.body.toString()).toBe('#!/bin/sh');
    expect((await http(ctl.httpAddress, '/agent/ingot-agent', { method: 'POST' })).status).toBe(405);
  });
});
