import { mkdirSync } from 'node:fs';
import { Migrator } from '@mikro-orm/migrations';
import { MikroORM as PgliteORM } from '@mikro-orm/pglite';
import { MikroORM as PostgresORM } from '@mikro-orm/postgresql';
import type { EntityManager } from '@mikro-orm/sql';
import type { Logger } from '../log/logger.ts';
import { ENTITIES } from './entities/index.ts';
import { MIGRATIONS } from './migrations/index.ts';

/** Where the controller keeps its state. */
export type DatabaseLocation = { kind: 'postgres'; url: string } | { kind: 'pglite'; dir: string };

export type Orm = Awaited<ReturnType<typeof PgliteORM.init>> | Awaited<ReturnType<typeof PostgresORM.init>>;

/** The database the controller runs on: one ORM, a fresh EntityManager per unit of work. */
export interface Database {
  readonly orm: Orm;
  readonly location: DatabaseLocation;
  /** An EntityManager with its own identity map, for one RPC or one job. */
  fork(): EntityManager;
  close(): Promise<void>;
}

/** Opens the database and applies pending migrations; the schema is the same on both backends. */
export async function openDatabase(location: DatabaseLocation, log: Logger): Promise<Database> {
  const common = {
    entities: ENTITIES,
    extensions: [Migrator],
    migrations: { migrationsList: MIGRATIONS, snapshot: false, transactional: true },
    allowGlobalContext: false,
    debug: ['info' as const],
    colors: false,
    logger: (message: string) => log.debug({ component: 'orm' }, message),
  };
  let orm: Orm;
  if (location.kind === 'pglite') {
    mkdirSync(location.dir, { recursive: true, mode: 0o700 });
    orm = await PgliteORM.init({ ...common, dbName: location.dir });
  } else {
    orm = await PostgresORM.init({ ...common, clientUrl: location.url, pool: { min: 0, max: 10 } });
  }
  try {
    await orm.migrator.up();
  } catch (err) {
    await orm.close(true);
    throw err;
  }
  return {
    orm,
    location,
    fork: () => orm.em.fork() as unknown as EntityManager,
    close: () => orm.close(true),
  };
}
