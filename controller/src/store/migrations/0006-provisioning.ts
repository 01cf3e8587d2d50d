import { SqlMigration } from './sql-migration.ts';

/**
 * The provisioning flows: which project network an instance goes on, the
 * flow and step it is at, the lease of the controller driving it, and every
 * step recorded as it starts and ends. Nodes get the disk deploys write to.
 */
export class Migration0006Provisioning extends SqlMigration {
  override name = '0006-provisioning';

  protected readonly sql = `
alter table "node" add column "root_disk" varchar(255) not null default '/dev/sda';

alter table "instance" add column "network_id" uuid null, add column "flow" varchar(255) null,
  add column "step" varchar(255) not null default '', add column "retries" int not null default 0,
  add column "task_id" uuid null, add column "wipe_full" boolean not null default false,
  add column "image_id" uuid null, add column "lease_owner" varchar(255) null,
  add column "lease_expires_at" timestamptz null;
create index "instance_flow_idx" on "instance" ("flow");

create table "instance_step" ("id" uuid not null, "instance_id" uuid not null, "flow" varchar(255) not null,
  "name" varchar(255) not null, "state" varchar(255) not null, "start_time" timestamptz not null,
  "end_time" timestamptz null, "message" text not null, "owner" varchar(255) not null, primary key ("id"));
create index "instance_step_instance_id_idx" on "instance_step" ("instance_id");
`;
}
