import { SqlMigration } from './sql-migration.ts';

/**
 * Power: what the BMC last reported (and when), what Ingot expects, since
 * when they differ, the last BMC error seen by the power sync, and the
 * per-node BMC settings (only the overrides; null means the defaults).
 */
export class Migration0002Power extends SqlMigration {
  override name = '0002-power';

  protected readonly sql = `
alter table "node" add column "power_state" varchar(255) null;
alter table "node" add column "power_state_time" timestamptz null;
alter table "node" add column "expected_power_state" varchar(255) null;
alter table "node" add column "power_drift_time" timestamptz null;
alter table "node" add column "power_error" text null;
alter table "node" add column "bmc_options" jsonb null;
`;
}
