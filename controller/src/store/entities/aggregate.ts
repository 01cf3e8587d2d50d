import { defineEntity, p } from '@mikro-orm/core';
import { identity } from './common.ts';

export const AggregateSchema = defineEntity({
  name: 'Aggregate',
  tableName: 'aggregate',
  properties: {
    ...identity,
    name: p.string().unique('aggregate_name_key'),
    availabilityZone: p.string(),
    metadata: p.json<Record<string, string>>(),
  },
});

export class Aggregate extends AggregateSchema.class {}
AggregateSchema.setClass(Aggregate);

/** What an aggregate member is: a hypervisor host or a bare-metal node. */
export type MemberKind = 'host' | 'node';

export const AggregateMemberSchema = defineEntity({
  name: 'AggregateMember',
  tableName: 'aggregate_member',
  properties: {
    aggregateId: p.uuid().primary(),
    memberKind: p.string().$type<MemberKind>().primary(),
    memberId: p.uuid().primary().index('aggregate_member_member_id_idx'),
  },
});

export class AggregateMember extends AggregateMemberSchema.class {}
AggregateMemberSchema.setClass(AggregateMember);
