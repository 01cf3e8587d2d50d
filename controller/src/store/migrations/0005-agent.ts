import { SqlMigration } from './sql-migration.ts';

/**
 * Images, agent tasks and their events, agent tokens, agent sessions (one
 * lease per node) and the hardware agents report.
 */
export class Migration0005Agent extends SqlMigration {
  override name = '0005-agent';

  protected readonly sql = `
create table "image" ("id" uuid not null, "created_at" timestamptz not null, "updated_at" timestamptz not null,
  "name" varchar(255) not null, "project_id" uuid null, "os_type" varchar(255) not null,
  "disk_format" varchar(255) not null, "size_bytes" bigint not null, "virtual_size_bytes" bigint not null,
  "sha256" varchar(255) not null, "visibility" varchar(255) not null, "status" varchar(255) not null,
  "status_reason" text not null, primary key ("id"));
create index "image_project_id_idx" on "image" ("project_id");
create unique index "image_owner_name_key" on "image" ((coalesce("project_id"::text, '')), "name");

create table "task" ("id" uuid not null, "created_at" timestamptz not null, "updated_at" timestamptz not null,
  "node_id" uuid not null, "kind" varchar(255) not null, "spec" jsonb not null, "image_id" uuid null,
  "state" varchar(255) not null, "attempt" int not null, "cancel_requested" boolean not null,
  "progress" jsonb null, "outcome" jsonb null, "error" jsonb null, "started_at" timestamptz null,
  "ended_at" timestamptz null, primary key ("id"));
create index "task_node_id_state_idx" on "task" ("node_id", "state");
create index "task_image_id_idx" on "task" ("image_id");

create table "task_event" ("id" uuid not null, "task_id" uuid not null, "time" timestamptz not null,
  "state" varchar(255) null, "progress" jsonb null, "error" jsonb null, primary key ("id"));
create index "task_event_task_id_idx" on "task_event" ("task_id");

create table "agent_token" ("node_id" uuid not null, "token_hash" varchar(255) not null,
  "expires_at" timestamptz not null, "created_at" timestamptz not null, primary key ("node_id"));
alter table "agent_token" add constraint "agent_token_token_hash_key" unique ("token_hash");

create table "agent_session" ("node_id" uuid not null, "session_id" uuid not null, "instance_id" varchar(255) not null,
  "agent_version" varchar(255) not null, "peer" varchar(255) not null, "connected_at" timestamptz not null,
  "heartbeat_at" timestamptz not null, "expires_at" timestamptz not null, primary key ("node_id"));

create table "node_hardware" ("node_id" uuid not null, "inventory" jsonb not null,
  "agent_version" varchar(255) not null, "updated_at" timestamptz not null, primary key ("node_id"));
`;
}
