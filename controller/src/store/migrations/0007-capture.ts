import { SqlMigration } from './sql-migration.ts';

/**
 * Capturing a node's disk into an image: the capture flow's subject, with
 * the node's state before it. Step records serve every flow now, so the
 * instance steps' table becomes the flows' steps.
 */
export class Migration0007Capture extends SqlMigration {
  override name = '0007-capture';

  protected readonly sql = `
alter table "instance_step" rename to "flow_step";
alter table "flow_step" rename column "instance_id" to "subject_id";
alter index "instance_step_instance_id_idx" rename to "flow_step_subject_id_idx";

create table "capture" ("id" uuid not null, "created_at" timestamptz not null, "updated_at" timestamptz not null,
  "node_id" uuid not null, "image_id" uuid null, "spec" jsonb not null, "power_off" boolean not null,
  "state" varchar(255) not null, "flow" varchar(255) null, "step" varchar(255) not null default '',
  "retries" int not null default 0, "task_id" uuid null, "reason" text not null default '', "outcome" jsonb null,
  "prior_network_id" uuid null, "prior_power" varchar(255) null, "prior_provision_state" varchar(255) not null,
  "lease_owner" varchar(255) null, "lease_expires_at" timestamptz null, primary key ("id"));
create index "capture_node_id_idx" on "capture" ("node_id");
create index "capture_flow_idx" on "capture" ("flow");
`;
}
