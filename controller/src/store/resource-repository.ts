import { type EntityClass, LockMode, UniqueConstraintViolationException } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/sql';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from '../domain/errors.ts';
import { type FieldSpec, readFields } from '../domain/fields.ts';
import { isId } from '../domain/formats.ts';
import { Violations } from '../domain/violations.ts';
import { nextPageToken, readPage } from './pagination.ts';

/** What every inventory row has. */
export interface Row {
  id: string;
  name: string;
}

/** How one kind of inventory object is validated, stored and guarded. */
export interface ResourceSpec<E extends Row> {
  /** Singular noun used in messages and field paths, e.g. `switch`. */
  kind: string;
  entity: EntityClass<E>;
  fields: readonly FieldSpec[];
  /**
   * Turns validated fields into columns: defaults, references resolved,
   * secrets sealed. Adds to `violations` or throws typed errors.
   */
  toColumns(fields: Record<string, unknown>, ctx: ColumnContext<E>): Promise<Partial<E>>;
  /** Throws FailedPreconditionError while something still depends on the row. */
  beforeDelete?(em: EntityManager, row: E): Promise<void>;
  /** Unique constraint name → the proto field it protects, for ALREADY_EXISTS. */
  uniques: Record<string, string>;
}

export interface ColumnContext<E> {
  em: EntityManager;
  violations: Violations;
  /** The row being updated; absent on create. */
  existing?: E;
}

/** Finds a row by id or unique name; NOT_FOUND otherwise. `lock` takes a row lock for the transaction. */
export async function findByRef<E extends Row>(
  em: EntityManager,
  kind: string,
  entity: EntityClass<E>,
  ref: string,
  opts: { lock?: boolean } = {},
): Promise<E> {
  const trimmed = ref.trim();
  if (!trimmed)
    throw new InvalidArgumentError([{ field: 'id', description: 'is required (an id or a name)' }]);
  const where = isId(trimmed) ? { id: trimmed } : { name: trimmed };
  const row = await em.findOne(
    entity,
    where as never,
    opts.lock ? { lockMode: LockMode.PESSIMISTIC_WRITE } : {},
  );
  if (!row) throw new NotFoundError(kind, trimmed);
  return row as E;
}

export async function createResource<E extends Row>(
  em: EntityManager,
  spec: ResourceSpec<E>,
  message: object | undefined,
): Promise<E> {
  return em.transactional(async (tx) => {
    const violations = new Violations();
    const fields = readFields(spec.fields, message as Record<string, unknown>, spec.kind, violations);
    violations.throwIfAny();
    const columns = await spec.toColumns(fields, { em: tx, violations });
    violations.throwIfAny();
    const row = tx.create(spec.entity, columns as never);
    await flushUnique(tx, spec, columns);
    return row;
  });
}

export async function updateResource<E extends Row>(
  em: EntityManager,
  spec: ResourceSpec<E>,
  message: (object & { id?: string }) | undefined,
  mask: readonly string[] | undefined,
): Promise<E> {
  return em.transactional(async (tx) => {
    const violations = new Violations();
    if (!message?.id) violations.add(`${spec.kind}.id`, 'is required');
    if (!mask) violations.add('update_mask', 'is required');
    violations.throwIfAny();
    const row = await findByRef(tx, spec.kind, spec.entity, message?.id ?? '', { lock: true });
    const fields = readFields(spec.fields, message as Record<string, unknown>, spec.kind, violations, mask);
    violations.throwIfAny();
    const columns = await spec.toColumns(fields, { em: tx, violations, existing: row });
    violations.throwIfAny();
    tx.assign(row, columns as never);
    await flushUnique(tx, spec, columns);
    return row;
  });
}

export async function deleteResource<E extends Row>(
  em: EntityManager,
  spec: ResourceSpec<E>,
  ref: string,
): Promise<void> {
  await em.transactional(async (tx) => {
    const row = await findByRef(tx, spec.kind, spec.entity, ref, { lock: true });
    await spec.beforeDelete?.(tx, row);
    tx.remove(row);
    await tx.flush();
  });
}

export interface Listing<E> {
  rows: E[];
  nextPageToken: string;
}

/** One page in creation order; `where` holds the (already resolved) filters. */
export async function listResources<E extends Row>(
  em: EntityManager,
  entity: EntityClass<E>,
  request: { pageSize: number; pageToken: string },
  where: Record<string, unknown>,
): Promise<Listing<E>> {
  const page = readPage(request.pageSize, request.pageToken, where);
  const filter = page.afterId ? { ...where, id: { $gt: page.afterId } } : where;
  const rows = (await em.find(entity, filter as never, {
    orderBy: { id: 'asc' } as never,
    limit: page.limit + 1,
  })) as E[];
  const more = rows.length > page.limit;
  if (more) rows.length = page.limit;
  return { rows, nextPageToken: more ? nextPageToken(rows.at(-1)?.id, where) : '' };
}

async function flushUnique<E extends Row>(
  em: EntityManager,
  spec: ResourceSpec<E>,
  columns: Partial<E>,
): Promise<void> {
  try {
    await em.flush();
  } catch (err) {
    if (err instanceof UniqueConstraintViolationException) {
      const constraint = (err as { constraint?: string }).constraint ?? '';
      const field = spec.uniques[constraint];
      if (field) {
        const key = field.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
        const value = (columns as Record<string, unknown>)[key];
        throw new AlreadyExistsError(spec.kind, field, String(value ?? ''));
      }
    }
    throw err;
  }
}
