import { Migration } from '@mikro-orm/migrations';

/**
 * A migration written as plain SQL, one statement per `;`-terminated line
 * group: PGlite's extended protocol takes one command per query.
 */
export abstract class SqlMigration extends Migration {
  protected abstract readonly sql: string;

  override up(): void {
    for (const statement of this.sql.split(/;\s*\n/)) {
      if (statement.trim()) this.addSql(statement);
    }
  }
}
