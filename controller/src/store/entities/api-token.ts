import { defineEntity, p } from '@mikro-orm/core';
import { newId } from '../ids.ts';

/** Who a bearer token speaks for. Only the token's SHA-256 is stored. */
export type Role = 'admin' | 'member';

export const ApiTokenSchema = defineEntity({
  name: 'ApiToken',
  tableName: 'api_token',
  properties: {
    id: p
      .uuid()
      .primary()
      .onCreate(() => newId()),
    tokenHash: p.string().unique('api_token_token_hash_key'),
    role: p.string().$type<Role>(),
    projectId: p.uuid().nullable(),
    description: p.text(),
    createdAt: p.datetime().onCreate(() => new Date()),
  },
});

export class ApiToken extends ApiTokenSchema.class {}
ApiTokenSchema.setClass(ApiToken);
