import { SqlMigration } from './sql-migration.ts';

/** Inventory: switches, nodes, projects, flavors, hypervisor hosts, aggregates, API tokens. */
export class Migration0001Inventory extends SqlMigration {
  override name = '0001-inventory';

  protected readonly sql = `
create table "switch" ("id" uuid not null, "created_at" timestamptz not null, "updated_at" timestamptz not null,
  "name" varchar(255) not null, "address" varchar(255) not null, "username" varchar(255) not null,
  "password_sealed" text null, "driver" varchar(255) not null, "description" text not null,
  "host_key_fingerprint" varchar(255) not null, primary key ("id"));
alter table "switch" add constraint "switch_name_key" unique ("name");

create table "node" ("id" uuid not null, "created_at" timestamptz not null, "updated_at" timestamptz not null,
  "name" varchar(255) not null, "ip" varchar(255) not null, "mac" varchar(255) not null, "cpus" int not null,
  "ram_mb" int not null, "disk_gb" int not null, "bmc_address" varchar(255) not null,
  "bmc_username" varchar(255) not null, "bmc_password_sealed" text null, "power_driver" varchar(255) not null,
  "switch_id" uuid null, "switch_port" varchar(255) not null, "provision_state" varchar(255) not null,
  "maintenance" boolean not null, "maintenance_reason" text not null, "last_error" text not null,
  "instance_id" uuid null, primary key ("id"));
alter table "node" add constraint "node_name_key" unique ("name");
alter table "node" add constraint "node_mac_key" unique ("mac");
create index "node_switch_id_idx" on "node" ("switch_id");
alter table "node" add constraint "node_switch_port_key" unique ("switch_id", "switch_port");

create table "project" ("id" uuid not null, "created_at" timestamptz not null, "updated_at" timestamptz not null,
  "name" varchar(255) not null, "isolated" boolean not null, "description" text not null, primary key ("id"));
alter table "project" add constraint "project_name_key" unique ("name");

create table "flavor" ("id" uuid not null, "created_at" timestamptz not null, "updated_at" timestamptz not null,
  "name" varchar(255) not null, "vcpus" int not null, "ram_mb" int not null, "disk_gb" int not null,
  "extra_specs" jsonb not null, primary key ("id"));
alter table "flavor" add constraint "flavor_name_key" unique ("name");

create table "host" ("id" uuid not null, "created_at" timestamptz not null, "updated_at" timestamptz not null,
  "name" varchar(255) not null, "vcpus" int not null, "ram_mb" int not null, "disk_gb" int not null,
  primary key ("id"));
alter table "host" add constraint "host_name_key" unique ("name");

create table "aggregate" ("id" uuid not null, "created_at" timestamptz not null, "updated_at" timestamptz not null,
  "name" varchar(255) not null, "availability_zone" varchar(255) not null, "metadata" jsonb not null,
  primary key ("id"));
alter table "aggregate" add constraint "aggregate_name_key" unique ("name");

create table "aggregate_member" ("aggregate_id" uuid not null, "member_kind" varchar(255) not null,
  "member_id" uuid not null, primary key ("aggregate_id", "member_kind", "member_id"));
create index "aggregate_member_member_id_idx" on "aggregate_member" ("member_id");

create table "api_token" ("id" uuid not null, "token_hash" varchar(255) not null, "role" varchar(255) not null,
  "project_id" uuid null, "description" text not null, "created_at" timestamptz not null, primary key ("id"));
alter table "api_token" add constraint "api_token_token_hash_key" unique ("token_hash");
`;
}
