import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../controller/src/log/logger.ts';
import { openDatabase } from '../../controller/src/store/orm.ts';
import { BACKENDS, createPgDatabase, removeDataDir } from '../support/controller.ts';

// The hand-written migrations and the entities describe the same schema: after every migration has
// run, the ORM finds nothing to change. A column added to an entity without a migration (or the
// other way round) fails here.
describe.each(BACKENDS)('schema on %s', (backend) => {
  it('matches the entities once the migrations have run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ingot-schema-'));
    const db = await openDatabase(
      backend === 'postgres' ? { kind: 'postgres', url: await createPgDatabase() } : { kind: 'pglite', dir },
      createLogger('silent'),
    );
    try {
      expect(await db.orm.schema.getUpdateSchemaSQL({ wrap: false })).toBe('');
    } finally {
      await db.close();
      removeDataDir(dir);
    }
  });
});
