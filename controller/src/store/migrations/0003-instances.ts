import { SqlMigration } from './sql-migration.ts';

/** Instances and their claims on nodes and hypervisor hosts. */
export class Migration0003Instances extends SqlMigration {
  override name = '0003-instances';

  protected readonly sql = `
create table "instance" ("id" uuid not null, "created_at" timestamptz not null, "updated_at" timestamptz not null,
  "name" varchar(255) not null, "project_id" uuid not null, "flavor_id" uuid not null, "image" varchar(255) not null,
  "hints" jsonb not null, "availability_zone" varchar(255) not null, "state" varchar(255) not null,
  "reason" text not null, "host_kind" varchar(255) not null, "host_id" uuid not null, "vcpus" int not null,
  "ram_mb" int not null, "disk_gb" int not null, primary key ("id"));
create index "instance_project_id_idx" on "instance" ("project_id");
create index "instance_host_id_idx" on "instance" ("host_id");
alter table "instance" add constraint "instance_project_name_key" unique ("project_id", "name");
`;
}
