import { createHash } from 'node:crypto';
import { Violations } from '../domain/violations.ts';

/** @default 50 */
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 1000;

export interface Page {
  limit: number;
  /** List objects whose id is greater than this (ids are time-ordered). */
  afterId?: string;
}

/**
 * Page tokens are opaque to callers: the last id of the previous page and a
 * fingerprint of the filters, so a token cannot be replayed with other filters.
 */
export function readPage(pageSize: number, pageToken: string, filters: unknown): Page {
  const violations = new Violations();
  if (!Number.isInteger(pageSize) || pageSize < 0)
    violations.add('page_size', 'must be a whole number, 0 for the default');
  const limit = Math.min(pageSize || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
  let afterId: string | undefined;
  if (pageToken) {
    const decoded = decodeToken(pageToken);
    if (!decoded) violations.add('page_token', 'is not a token returned by this list');
    else if (decoded.f !== fingerprint(filters)) violations.add('page_token', 'was issued for other filters');
    else afterId = decoded.a;
  }
  violations.throwIfAny();
  return { limit, afterId };
}

export function nextPageToken(lastId: string | undefined, filters: unknown): string {
  if (!lastId) return '';
  return Buffer.from(JSON.stringify({ a: lastId, f: fingerprint(filters) })).toString('base64url');
}

function fingerprint(filters: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify(filters ?? null))
    .digest('base64url')
    .slice(0, 16);
}

function decodeToken(token: string): { a: string; f: string } | undefined {
  try {
    const value = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as unknown;
    if (typeof value !== 'object' || value === null) return undefined;
    const { a, f } = value as Record<string, unknown>;
    if (typeof a !== 'string' || typeof f !== 'string' || !/^[0-9a-f-]{36}$/.test(a)) return undefined;
    return { a, f };
  } catch {
    return undefined;
  }
}
