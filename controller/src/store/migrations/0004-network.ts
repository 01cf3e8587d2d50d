import { SqlMigration } from './sql-migration.ts';

/**
 * Networks (the service network and projects' networks, each a VLAN and, for
 * the Linux-bridge driver, a bridge); which network each node's switch port
 * is on and where Ingot is moving it; the node's netboot step; switches'
 * SSH keys and driver options.
 */
export class Migration0004Network extends SqlMigration {
  override name = '0004-network';

  protected readonly sql = `
create table "network" ("id" uuid not null, "created_at" timestamptz not null, "updated_at" timestamptz not null,
  "name" varchar(255) not null, "kind" varchar(255) not null, "project_id" uuid null, "vlan_id" int not null,
  "bridge" varchar(255) not null, "description" text not null, primary key ("id"));
alter table "network" add constraint "network_name_key" unique ("name");
alter table "network" add constraint "network_vlan_id_key" unique ("vlan_id");
create unique index "network_service_key" on "network" ("kind") where "kind" = 'service';
create unique index "network_bridge_key" on "network" ("bridge") where "bridge" <> '';
create index "network_project_id_idx" on "network" ("project_id");

alter table "node" add column "network_id" uuid null;
alter table "node" add column "target_network_id" uuid null;
alter table "node" add column "network_error" text null;
alter table "node" add column "network_time" timestamptz null;
alter table "node" add column "netboot_state" varchar(255) null;
alter table "node" add column "netboot_time" timestamptz null;
create index "node_network_id_idx" on "node" ("network_id");
create index "node_target_network_id_idx" on "node" ("target_network_id");

alter table "switch" add column "ssh_private_key_sealed" text null;
alter table "switch" add column "driver_options" jsonb null;
`;
}
