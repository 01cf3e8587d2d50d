// Smoke test of the PostgreSQL harness in test/support/run-tests.sh: the throwaway cluster is up,
// reachable at INGOT_TEST_PG_URL, and lets a test create and drop its own database.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describe, expect, it } from 'vitest';

function pgUrl(): string {
  const url = process.env.INGOT_TEST_PG_URL;
  if (!url) {
    throw new Error(
      'INGOT_TEST_PG_URL is not set: run the suite with `make test` (test/support/run-tests.sh), ' +
        'which starts a throwaway PostgreSQL and exports it',
    );
  }
  return url;
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

describe('PostgreSQL test harness', () => {
  it('creates a database, queries it and drops it', async () => {
    const url = pgUrl();
    const name = `ingot_smoke_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${name}`);
      try {
        const client = new pg.Client({ connectionString: withDatabase(url, name) });
        await client.connect();
        try {
          const { rows } = await client.query<{ one: number; db: string }>(
            'SELECT 1 AS one, current_database() AS db',
          );
          expect(rows).toEqual([{ one: 1, db: name }]);
        } finally {
          await client.end();
        }
      } finally {
        await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      }
      const { rows } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      expect(rows).toHaveLength(0);
    } finally {
      await admin.end();
    }
  });
});
