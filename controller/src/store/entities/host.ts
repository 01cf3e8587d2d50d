import { defineEntity, p } from '@mikro-orm/core';
import { identity, size } from './common.ts';

/** A hypervisor host of a mixed pool: Ingot places VMs on it but does not spawn them. */
export const HostSchema = defineEntity({
  name: 'Host',
  tableName: 'host',
  properties: {
    ...identity,
    name: p.string().unique('host_name_key'),
    vcpus: p.integer(),
    ...size,
  },
});

export class Host extends HostSchema.class {}
HostSchema.setClass(Host);
