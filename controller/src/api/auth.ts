import type { Metadata } from '@grpc/grpc-js';
import type { EntityManager } from '@mikro-orm/sql';
import { PermissionDeniedError, UnauthenticatedError } from '../domain/errors.ts';
import type { Role } from '../store/entities/api-token.ts';
import { findToken } from '../store/tokens.ts';

/** Who is calling: every handler sees this, never the raw token. */
export interface Caller {
  tokenId: string;
  role: Role;
  /** The member's project; absent for admins. */
  projectId?: string;
}

/** Resolves `authorization: Bearer <token>` to a caller; UNAUTHENTICATED otherwise. */
export async function authenticate(metadata: Metadata, em: EntityManager): Promise<Caller> {
  const header = metadata.get('authorization')[0];
  if (typeof header !== 'string' || header === '') {
    throw new UnauthenticatedError(
      'missing "authorization: Bearer <token>" metadata; bmctl reads INGOT_TOKEN',
    );
  }
  const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
  if (!match?.[1]) throw new UnauthenticatedError('authorization metadata must be "Bearer <token>"');
  const token = await findToken(em, match[1]);
  if (!token) throw new UnauthenticatedError('the bearer token is not valid');
  return { tokenId: token.id, role: token.role, ...(token.projectId ? { projectId: token.projectId } : {}) };
}

/** Which roles may call a method. */
export type Access = readonly Role[];

export const ADMIN_ONLY: Access = ['admin'];

export function authorize(caller: Caller, access: Access, method: string): void {
  if (!access.includes(caller.role)) {
    throw new PermissionDeniedError(
      `${method} needs the ${access.join(' or ')} role; this token is a ${caller.role}`,
    );
  }
}
