import type { EntityManager } from '@mikro-orm/sql';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../domain/errors.ts';
import { stringMap } from '../domain/fields.ts';
import { isId } from '../domain/formats.ts';
import { Aggregate, AggregateMember, type MemberKind } from './entities/aggregate.ts';
import { Host } from './entities/host.ts';
import { Node } from './entities/node.ts';
import { Project } from './entities/project.ts';
import { findByRef } from './resource-repository.ts';

/** Metadata key that dedicates an aggregate to one project (the seed's PlacementFilter). */
export const PROJECT_ID_KEY = 'project_id';

/** A hypervisor host or a bare-metal node, by id or name; a name both use is ambiguous. */
async function findMember(
  em: EntityManager,
  ref: string,
): Promise<{ kind: MemberKind; id: string; name: string }> {
  const trimmed = ref.trim();
  if (!trimmed)
    throw new InvalidArgumentError([
      { field: 'host', description: 'is required (a host or node id or name)' },
    ]);
  const where = isId(trimmed) ? { id: trimmed } : { name: trimmed };
  const [host, node] = await Promise.all([em.findOne(Host, where), em.findOne(Node, where)]);
  if (host && node) {
    throw new InvalidArgumentError([
      { field: 'host', description: `"${trimmed}" names both a hypervisor host and a node; use the id` },
    ]);
  }
  if (host) return { kind: 'host', id: host.id, name: host.name };
  if (node) return { kind: 'node', id: node.id, name: node.name };
  throw new NotFoundError('host', trimmed);
}

/** Adds a member; adding one that is already there changes nothing. */
export async function addMember(
  em: EntityManager,
  aggregateRef: string,
  hostRef: string,
): Promise<Aggregate> {
  return em.transactional(async (tx) => {
    const aggregate = await findByRef(tx, 'aggregate', Aggregate, aggregateRef, { lock: true });
    const member = await findMember(tx, hostRef);
    const key = { aggregateId: aggregate.id, memberKind: member.kind, memberId: member.id };
    if (!(await tx.findOne(AggregateMember, key))) tx.create(AggregateMember, key);
    aggregate.updatedAt = new Date();
    await tx.flush();
    return aggregate;
  });
}

export async function removeMember(
  em: EntityManager,
  aggregateRef: string,
  hostRef: string,
): Promise<Aggregate> {
  return em.transactional(async (tx) => {
    const aggregate = await findByRef(tx, 'aggregate', Aggregate, aggregateRef, { lock: true });
    const member = await findMember(tx, hostRef);
    const removed = await tx.nativeDelete(AggregateMember, {
      aggregateId: aggregate.id,
      memberKind: member.kind,
      memberId: member.id,
    });
    if (removed === 0) {
      throw new FailedPreconditionError(
        'NOT_A_MEMBER',
        `${member.name} is not in aggregate ${aggregate.name}`,
        {
          aggregate: aggregate.name,
          host: member.name,
        },
      );
    }
    aggregate.updatedAt = new Date();
    await tx.flush();
    return aggregate;
  });
}

/**
 * Merges `set` into the metadata and drops `unset` keys. A `project_id` may
 * name the project by id or name and is stored as its id; one project owns at
 * most one aggregate, so its isolation has a single, unambiguous home.
 */
export async function setMetadata(
  em: EntityManager,
  aggregateRef: string,
  set: Record<string, string>,
  unset: readonly string[],
): Promise<Aggregate> {
  const checked = stringMap(set);
  if (typeof checked === 'object' && checked !== null && 'invalid' in checked) {
    throw new InvalidArgumentError([{ field: 'set', description: String(checked.invalid) }]);
  }
  const overlap = unset.filter((k) => k in set);
  if (overlap.length > 0) {
    throw new InvalidArgumentError([
      { field: 'unset', description: `${overlap.join(', ')} cannot be both set and unset` },
    ]);
  }
  return em.transactional(async (tx) => {
    const aggregate = await findByRef(tx, 'aggregate', Aggregate, aggregateRef, { lock: true });
    const metadata = { ...aggregate.metadata, ...set };
    for (const key of unset) delete metadata[key];
    const projectRef = set[PROJECT_ID_KEY];
    if (projectRef !== undefined) {
      const project = await findByRef(tx, 'project', Project, projectRef);
      const owner = await tx.findOne(Aggregate, {
        metadata: { [PROJECT_ID_KEY]: project.id },
        id: { $ne: aggregate.id },
      } as never);
      if (owner) {
        throw new FailedPreconditionError(
          'PROJECT_ALREADY_DEDICATED',
          `project ${project.name} already owns aggregate ${owner.name}; unset its project_id first`,
          { project: project.name, aggregate: owner.name },
        );
      }
      metadata[PROJECT_ID_KEY] = project.id;
    }
    aggregate.metadata = metadata;
    await tx.flush();
    return aggregate;
  });
}

/** Member names per aggregate id, sorted, for showing aggregates. */
export async function memberNames(em: EntityManager, aggregateIds: string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>(aggregateIds.map((id) => [id, []]));
  if (aggregateIds.length === 0) return out;
  const members = await em.find(AggregateMember, { aggregateId: { $in: aggregateIds } });
  const ids = (kind: MemberKind) => members.filter((m) => m.memberKind === kind).map((m) => m.memberId);
  const [hosts, nodes] = await Promise.all([
    em.find(Host, { id: { $in: ids('host') } }, { fields: ['id', 'name'] }),
    em.find(Node, { id: { $in: ids('node') } }, { fields: ['id', 'name'] }),
  ]);
  const names = new Map<string, string>([...hosts, ...nodes].map((r) => [r.id, r.name]));
  for (const m of members) out.get(m.aggregateId)?.push(names.get(m.memberId) ?? m.memberId);
  for (const list of out.values()) list.sort();
  return out;
}
