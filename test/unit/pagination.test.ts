import { describe, expect, it } from 'vitest';
import { type FieldViolation, InvalidArgumentError } from '../../controller/src/domain/errors.ts';
import {
  DEFAULT_PAGE_SIZE,
  MAX_PAGE_SIZE,
  nextPageToken,
  readPage,
} from '../../controller/src/store/pagination.ts';

const LAST_ID = '0190a6f5-7c1e-7000-8000-0123456789ab';
const FILTERS = { provisionState: 'available', maintenance: false };

/** The violations readPage throws; fails the test when it does not throw InvalidArgumentError. */
function violationsOf(read: () => unknown): FieldViolation[] {
  try {
    read();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).code).toBe(3);
    return (err as InvalidArgumentError).violations;
  }
  throw new Error('expected InvalidArgumentError');
}

const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const BAD_TOKEN = [{ field: 'page_token', description: 'is not a token returned by this list' }];

describe('page size', () => {
  it('defaults when not given', () => {
    expect(readPage(0, '', FILTERS)).toEqual({ limit: DEFAULT_PAGE_SIZE, afterId: undefined });
    expect(DEFAULT_PAGE_SIZE).toBe(50);
  });

  it('is kept up to the maximum and capped above it', () => {
    expect(readPage(1, '', FILTERS).limit).toBe(1);
    expect(readPage(MAX_PAGE_SIZE, '', FILTERS).limit).toBe(MAX_PAGE_SIZE);
    expect(readPage(MAX_PAGE_SIZE + 1, '', FILTERS).limit).toBe(MAX_PAGE_SIZE);
    expect(readPage(2 ** 31 - 1, '', FILTERS).limit).toBe(MAX_PAGE_SIZE);
  });

  it.each([-1, -1000, 1.5])('rejects %d', (size) => {
    expect(violationsOf(() => readPage(size, '', FILTERS))).toEqual([
      { field: 'page_size', description: 'must be a whole number, 0 for the default' },
    ]);
  });
});

describe('page tokens', () => {
  it('has no next token without a last id', () => {
    expect(nextPageToken(undefined, FILTERS)).toBe('');
    expect(nextPageToken('', FILTERS)).toBe('');
  });

  it('round-trips the last id for the same filters', () => {
    const token = nextPageToken(LAST_ID, FILTERS);
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(readPage(10, token, { ...FILTERS })).toEqual({ limit: 10, afterId: LAST_ID });
  });

  it('round-trips with no filters', () => {
    expect(readPage(0, nextPageToken(LAST_ID, undefined), undefined).afterId).toBe(LAST_ID);
  });

  it.each([
    ['other values', { provisionState: 'active', maintenance: false }],
    ['an extra filter', { ...FILTERS, switchId: LAST_ID }],
    ['no filters', undefined],
  ])('rejects a token issued for %s', (_, filters) => {
    expect(violationsOf(() => readPage(10, nextPageToken(LAST_ID, FILTERS), filters))).toEqual([
      { field: 'page_token', description: 'was issued for other filters' },
    ]);
  });

  it.each([
    ['garbage', 'not a token'],
    ['truncated', nextPageToken(LAST_ID, FILTERS).slice(0, 20)],
    ['JSON null', encode(null)],
    ['a JSON number', encode(42)],
    ['a JSON string', encode(LAST_ID)],
    ['no fingerprint', { a: LAST_ID }],
    ['a numeric fingerprint', { a: LAST_ID, f: 7 }],
    ['no last id', { f: 'x' }],
    ['an id that is not a UUID', { a: "x' OR '1'='1", f: 'x' }],
    ['an upper-case id', { a: LAST_ID.toUpperCase(), f: 'x' }],
  ])('rejects %s', (_, token) => {
    const text = typeof token === 'string' ? token : encode(token);
    expect(violationsOf(() => readPage(10, text, FILTERS))).toEqual(BAD_TOKEN);
  });

  it('rejects a token whose id was swapped for a non-id', () => {
    const json = Buffer.from(nextPageToken(LAST_ID, FILTERS), 'base64url').toString();
    const tampered = Buffer.from(json.replace(LAST_ID, `${LAST_ID}"--`)).toString('base64url');
    expect(violationsOf(() => readPage(10, tampered, FILTERS))).toEqual(BAD_TOKEN);
  });

  it('reports a bad size and a bad token together', () => {
    expect(violationsOf(() => readPage(-5, 'garbage', FILTERS)).map((v) => v.field)).toEqual([
      'page_size',
      'page_token',
    ]);
  });
});
