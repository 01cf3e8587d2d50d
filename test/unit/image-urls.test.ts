import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseRange } from '../../controller/src/http/file-response.ts';
import { UrlSigner } from '../../controller/src/images/url-signer.ts';
import { SecretBox } from '../../controller/src/store/secrets.ts';

const ID = '01900000-0000-7000-8000-000000000001';
const OTHER = '01900000-0000-7000-8000-000000000002';

describe('UrlSigner', () => {
  const signer = new UrlSigner(randomBytes(32));
  const now = new Date('2026-06-01T12:00:00Z');
  const { expires, sig } = signer.sign(ID, new Date(now.getTime() + 600_000));

  it('accepts its own signature for the image until it expires', () => {
    expect(signer.verify(ID, String(expires), sig, now)).toBe(true);
    expect(signer.verify(ID, String(expires), sig, new Date(expires * 1000 - 1))).toBe(true);
    expect(signer.verify(ID, String(expires), sig, new Date(expires * 1000))).toBe(false);
  });

  it('refuses another image, another expiry, another key and malformed parameters', () => {
    expect(signer.verify(OTHER, String(expires), sig, now)).toBe(false);
    expect(signer.verify(ID, String(expires + 1), sig, now)).toBe(false);
    expect(new UrlSigner(randomBytes(32)).verify(ID, String(expires), sig, now)).toBe(false);
    expect(signer.verify(ID, null, sig, now)).toBe(false);
    expect(signer.verify(ID, String(expires), null, now)).toBe(false);
    expect(signer.verify(ID, '1e12', sig, now)).toBe(false);
    expect(signer.verify(ID, String(expires), `${sig}x`, now)).toBe(false);
  });

  it('derives the same key on every controller that shares the secret key', () => {
    const key = randomBytes(32);
    const a = new SecretBox(key).derive('image-url-signing');
    expect(new SecretBox(key).derive('image-url-signing').equals(a)).toBe(true);
    expect(new SecretBox(key).derive('something-else').equals(a)).toBe(false);
    expect(a.equals(key)).toBe(false);
  });
});

describe('parseRange', () => {
  it.each([
    [undefined, 100, undefined],
    ['bytes=0-9', 100, { start: 0, end: 9 }],
    ['bytes=90-', 100, { start: 90, end: 99 }],
    ['bytes=90-200', 100, { start: 90, end: 99 }],
    ['bytes=-10', 100, { start: 90, end: 99 }],
    ['bytes=-500', 100, { start: 0, end: 99 }],
    ['bytes=100-', 100, 'unsatisfiable'],
    ['bytes=9-3', 100, 'unsatisfiable'],
    ['bytes=-0', 100, 'unsatisfiable'],
    ['bytes=0-1,5-9', 100, undefined],
    ['items=0-9', 100, undefined],
    ['bytes=-', 100, undefined],
  ] as const)('%s of %i bytes', (header, size, expected) => {
    expect(parseRange(header, size)).toEqual(expected);
  });
});
