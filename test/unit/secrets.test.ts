import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SecretBox } from '../../controller/src/store/secrets.ts';

const PASSWORD = 'correct horse battery staple';

describe('SecretBox', () => {
  const box = new SecretBox(randomBytes(32));

  it.each([PASSWORD, '', 'pässwörd ✓', 'x'.repeat(1024)])('opens what it sealed: %j', (plaintext) => {
    expect(box.open(box.seal(plaintext))).toBe(plaintext);
  });

  it('seals to a versioned value that differs each time and hides the plaintext', () => {
    const first = box.seal(PASSWORD);
    const second = box.seal(PASSWORD);
    expect(first).toMatch(/^v1:[A-Za-z0-9+/]+=*$/);
    expect(first).not.toBe(second);
    for (const sealed of [first, second]) {
      expect(sealed).not.toContain(PASSWORD);
      expect(Buffer.from(sealed.slice(3), 'base64').includes(Buffer.from(PASSWORD))).toBe(false);
    }
  });

  it('refuses to open a value sealed with another key', () => {
    const other = new SecretBox(randomBytes(32));
    expect(() => other.open(box.seal(PASSWORD))).toThrow();
  });

  it.each([
    ['ciphertext', 40],
    ['tag', 12 + 3],
    ['iv', 0],
  ])('refuses a value whose %s was changed', (_, offset) => {
    const raw = Buffer.from(box.seal(PASSWORD).slice(3), 'base64');
    raw[offset] = (raw[offset] ?? 0) ^ 0x01;
    expect(() => box.open(`v1:${raw.toString('base64')}`)).toThrow();
  });

  it('refuses a truncated value', () => {
    const sealed = box.seal(PASSWORD);
    expect(() => box.open(sealed.slice(0, -8))).toThrow();
  });

  it.each(['v2:AAAA', 'AAAA', PASSWORD, ''])('refuses the unknown format %j', (sealed) => {
    expect(() => box.open(sealed)).toThrow('unknown sealed secret format');
  });

  it.each([0, 16, 31, 33])('rejects a %d-byte key', (length) => {
    expect(() => new SecretBox(randomBytes(length))).toThrow(`secret key must be 32 bytes, got ${length}`);
  });
});

describe('SecretBox.fromFile', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ingot-secrets-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a 0600 key file when asked and reuses it afterwards', async () => {
    const path = join(dir, 'secret.key');
    const box = SecretBox.fromFile(path, { create: true });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(Buffer.from((await readFile(path, 'utf8')).trim(), 'base64')).toHaveLength(32);

    const sealed = box.seal(PASSWORD);
    const contents = await readFile(path, 'utf8');
    const reopened = SecretBox.fromFile(path, { create: true });
    expect(await readFile(path, 'utf8')).toBe(contents);
    expect(reopened.open(sealed)).toBe(PASSWORD);
    expect(SecretBox.fromFile(path, { create: false }).open(sealed)).toBe(PASSWORD);
  });

  it('refuses a missing key file unless asked to create it', async () => {
    const path = join(dir, 'secret.key');
    expect(() => SecretBox.fromFile(path, { create: false })).toThrow(
      `secret key file ${path} does not exist`,
    );
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('reads a key written by an operator', async () => {
    const key = randomBytes(32);
    const path = join(dir, 'operator.key');
    await writeFile(path, `${key.toString('base64')}\n`, { mode: 0o600 });
    const sealed = new SecretBox(key).seal(PASSWORD);
    expect(SecretBox.fromFile(path, { create: false }).open(sealed)).toBe(PASSWORD);
  });

  it('rejects a key file holding a key of the wrong length', async () => {
    const path = join(dir, 'short.key');
    await writeFile(path, randomBytes(16).toString('base64'), { mode: 0o600 });
    expect(() => SecretBox.fromFile(path, { create: true })).toThrow('secret key must be 32 bytes, got 16');
  });
});
