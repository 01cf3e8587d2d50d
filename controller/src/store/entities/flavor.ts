import { defineEntity, p } from '@mikro-orm/core';
import { identity, size } from './common.ts';

export const FlavorSchema = defineEntity({
  name: 'Flavor',
  tableName: 'flavor',
  properties: {
    ...identity,
    name: p.string().unique('flavor_name_key'),
    vcpus: p.integer(),
    ...size,
    extraSpecs: p.json<Record<string, string>>(),
  },
});

export class Flavor extends FlavorSchema.class {}
FlavorSchema.setClass(Flavor);
