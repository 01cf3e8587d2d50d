import { createHash, randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import type { EntityManager } from '@mikro-orm/sql';
import { ApiToken, type Role } from './entities/api-token.ts';

/** Tokens look like `ingot_<43 url-safe chars>`; the prefix makes leaked ones easy to grep for. */
export function mintToken(): string {
  return `ingot_${randomBytes(32).toString('base64url')}`;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Stores a new token's hash and returns the token itself, which is never stored. */
export async function createToken(
  em: EntityManager,
  opts: { role: Role; projectId?: string; description: string },
): Promise<string> {
  const token = mintToken();
  em.create(ApiToken, {
    tokenHash: hashToken(token),
    role: opts.role,
    projectId: opts.projectId ?? null,
    description: opts.description,
  });
  await em.flush();
  return token;
}

export async function findToken(em: EntityManager, token: string): Promise<ApiToken | null> {
  return em.findOne(ApiToken, { tokenHash: hashToken(token) });
}

/**
 * On first start (no admin token in the database) mints one and writes it to
 * `path` with mode 0600, so the operator who owns the data directory can
 * start using bmctl. Returns true when a token was written.
 */
export async function ensureAdminToken(em: EntityManager, path: string): Promise<boolean> {
  if ((await em.count(ApiToken, { role: 'admin' })) > 0) return false;
  if (existsSync(path))
    throw new Error(`${path} exists but the database has no admin token; remove the file to mint a new one`);
  const token = await createToken(em, {
    role: 'admin',
    description: 'first admin token, minted at first start',
  });
  writeFileSync(path, `${token}\n`, { mode: 0o600, flag: 'wx' });
  return true;
}
