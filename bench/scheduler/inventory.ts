import pg from 'pg';
import { newId } from '../../controller/src/store/ids.ts';

/**
 * The benchmark's inventory, written with bulk SQL (unnest arrays, a few
 * statements per table) instead of 15,000 RPCs. Column lists follow
 * controller/src/store/migrations/*.ts; the schema must already exist.
 *
 * - 10,000 bare-metal nodes in four sizes (40/30/20/10 %), 40 per top-of-rack
 *   switch; 97 % available, 2 % in maintenance, 1 % cleaning; every node in
 *   one zoned aggregate (`bm-az1`, `bm-az2`), a fifth also in `bm-ssd`.
 * - 1,000 hypervisor hosts of 32, 48 or 64 vCPUs: 700 in `default` (150 of
 *   them also in `hv-ssd` or `hv-gpu`), 75 in each of `secure-1`…`secure-4`,
 *   which are dedicated (`project_id`) to the isolated projects of that name.
 * - 10 aggregates, 5 projects (`common` plus the four isolated ones), 8
 *   flavors, and 3,000 VMs already placed on the hosts so that hosts report
 *   used capacity as they would in production.
 */
export interface Inventory {
  projects: { id: string; name: string; isolated: boolean }[];
  flavors: FlavorRow[];
  counts: { nodes: number; hosts: number; aggregates: number; members: number; instances: number };
}

export interface FlavorRow {
  id: string;
  name: string;
  vcpus: number;
  ramMb: number;
  diskGb: number;
  extraSpecs: Record<string, string>;
}

export const NODE_COUNT = 10_000;
export const HOST_COUNT = 1_000;
const NODES_PER_SWITCH = 40;
const EXISTING_VMS = 3_000;
const GiB = 1024;

/** Node sizes: cpus, RAM (MiB), disk (GB), share of the fleet. */
const NODE_SIZES = [
  { cpus: 16, ramMb: 64 * GiB, diskGb: 480, share: 0.4 },
  { cpus: 32, ramMb: 128 * GiB, diskGb: 960, share: 0.3 },
  { cpus: 48, ramMb: 256 * GiB, diskGb: 1920, share: 0.2 },
  { cpus: 64, ramMb: 512 * GiB, diskGb: 3840, share: 0.1 },
];

/** Hypervisor host sizes, assigned round-robin. */
const HOST_SIZES = [
  { vcpus: 32, ramMb: 256 * GiB, diskGb: 2000 },
  { vcpus: 48, ramMb: 384 * GiB, diskGb: 3000 },
  { vcpus: 64, ramMb: 512 * GiB, diskGb: 4000 },
];

const FLAVORS: Omit<FlavorRow, 'id'>[] = [
  { name: 'bm.small', vcpus: 16, ramMb: 64 * GiB, diskGb: 480, extraSpecs: {} },
  { name: 'bm.medium', vcpus: 32, ramMb: 128 * GiB, diskGb: 960, extraSpecs: {} },
  { name: 'bm.large', vcpus: 48, ramMb: 256 * GiB, diskGb: 1920, extraSpecs: {} },
  { name: 'bm.xlarge', vcpus: 64, ramMb: 512 * GiB, diskGb: 3840, extraSpecs: {} },
  {
    name: 'bm.medium-ssd',
    vcpus: 32,
    ramMb: 128 * GiB,
    diskGb: 960,
    extraSpecs: { 'aggregate_instance_extra_specs:ssd': 'true' },
  },
  { name: 'vm.small', vcpus: 2, ramMb: 4 * GiB, diskGb: 40, extraSpecs: {} },
  { name: 'vm.medium', vcpus: 4, ramMb: 16 * GiB, diskGb: 80, extraSpecs: {} },
  { name: 'vm.large', vcpus: 8, ramMb: 32 * GiB, diskGb: 160, extraSpecs: { 'hw:cpu_model': 'xeon' } },
];

/** A small deterministic PRNG (mulberry32), so every run loads the same inventory. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const octets = (i: number) => `${(i >> 8) & 255}.${i & 255}`;
const hex2 = (n: number) => (n & 255).toString(16).padStart(2, '0');

/** Writes the whole inventory in one transaction. */
export async function loadInventory(url: string): Promise<Inventory> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('begin');
    const inventory = await insertAll(client);
    await client.query('commit');
    await client.query('analyze');
    return inventory;
  } catch (err) {
    await client.query('rollback').catch(() => {});
    throw err;
  } finally {
    await client.end();
  }
}

async function insertAll(client: pg.Client): Promise<Inventory> {
  const random = prng(42);
  const projects = [
    { id: newId(), name: 'common', isolated: false },
    ...[1, 2, 3, 4].map((n) => ({ id: newId(), name: `secure-${n}`, isolated: true })),
  ];
  await client.query(
    `insert into project (id, created_at, updated_at, name, isolated, description)
     select id, now(), now(), name, isolated, 'bench' from unnest($1::uuid[], $2::text[], $3::bool[])
       as t(id, name, isolated)`,
    [projects.map((p) => p.id), projects.map((p) => p.name), projects.map((p) => p.isolated)],
  );

  const flavors: FlavorRow[] = FLAVORS.map((f) => ({ id: newId(), ...f }));
  await client.query(
    `insert into flavor (id, created_at, updated_at, name, vcpus, ram_mb, disk_gb, extra_specs)
     select id, now(), now(), name, vcpus, ram_mb, disk_gb, extra_specs
       from unnest($1::uuid[], $2::text[], $3::int[], $4::int[], $5::int[], $6::jsonb[])
         as t(id, name, vcpus, ram_mb, disk_gb, extra_specs)`,
    [
      flavors.map((f) => f.id),
      flavors.map((f) => f.name),
      flavors.map((f) => f.vcpus),
      flavors.map((f) => f.ramMb),
      flavors.map((f) => f.diskGb),
      flavors.map((f) => JSON.stringify(f.extraSpecs)),
    ],
  );

  const switchCount = Math.ceil(NODE_COUNT / NODES_PER_SWITCH);
  const switchIds = Array.from({ length: switchCount }, () => newId());
  await client.query(
    `insert into switch (id, created_at, updated_at, name, address, username, password_sealed, driver,
                         description, host_key_fingerprint)
     select id, now(), now(), address, address, 'netops', null, 'juniper', 'bench top-of-rack', ''
       from unnest($1::uuid[], $2::text[]) as t(id, address)`,
    [switchIds, switchIds.map((_, i) => `10.1.${octets(i)}`)],
  );

  const nodes = {
    id: [] as string[],
    name: [] as string[],
    ip: [] as string[],
    mac: [] as string[],
    cpus: [] as number[],
    ramMb: [] as number[],
    diskGb: [] as number[],
    bmc: [] as string[],
    switchId: [] as string[],
    port: [] as string[],
    state: [] as string[],
    maintenance: [] as boolean[],
  };
  for (let i = 0; i < NODE_COUNT; i++) {
    let pick = random();
    const size =
      NODE_SIZES.find((s) => {
        pick -= s.share;
        return pick < 0;
      }) ?? NODE_SIZES[0];
    if (!size) throw new Error('no node sizes');
    const mac = `52:54:00:${hex2(i >> 16)}:${hex2(i >> 8)}:${hex2(i)}`;
    const health = random();
    nodes.id.push(newId());
    nodes.name.push(`node-${mac.replaceAll(':', '')}`);
    nodes.ip.push(`10.16.${octets(i)}`);
    nodes.mac.push(mac);
    nodes.cpus.push(size.cpus);
    nodes.ramMb.push(size.ramMb);
    nodes.diskGb.push(size.diskGb);
    nodes.bmc.push(`ipmi://10.32.${octets(i)}:623`);
    nodes.switchId.push(switchIds[Math.floor(i / NODES_PER_SWITCH)] ?? '');
    nodes.port.push(`ge-0/0/${i % NODES_PER_SWITCH}`);
    nodes.state.push(health < 0.01 ? 'cleaning' : 'available');
    nodes.maintenance.push(health >= 0.01 && health < 0.03);
  }
  await client.query(
    `insert into node (id, created_at, updated_at, name, ip, mac, cpus, ram_mb, disk_gb, bmc_address,
                       bmc_username, bmc_password_sealed, power_driver, switch_id, switch_port,
                       provision_state, maintenance, maintenance_reason, last_error, instance_id)
     select id, now(), now(), name, ip, mac, cpus, ram_mb, disk_gb, bmc, 'root', null, 'ipmitool',
            switch_id, port, state, maintenance, case when maintenance then 'bench: failed DIMM' else '' end,
            '', null
       from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::int[],
                   $8::text[], $9::uuid[], $10::text[], $11::text[], $12::bool[])
         as t(id, name, ip, mac, cpus, ram_mb, disk_gb, bmc, switch_id, port, state, maintenance)`,
    [
      nodes.id,
      nodes.name,
      nodes.ip,
      nodes.mac,
      nodes.cpus,
      nodes.ramMb,
      nodes.diskGb,
      nodes.bmc,
      nodes.switchId,
      nodes.port,
      nodes.state,
      nodes.maintenance,
    ],
  );

  const hosts = Array.from({ length: HOST_COUNT }, (_, i) => ({
    id: newId(),
    name: `compute-${String(i + 1).padStart(4, '0')}`,
    ...(HOST_SIZES[i % HOST_SIZES.length] ?? { vcpus: 32, ramMb: 256 * GiB, diskGb: 2000 }),
  }));
  await client.query(
    `insert into host (id, created_at, updated_at, name, vcpus, ram_mb, disk_gb)
     select id, now(), now(), name, vcpus, ram_mb, disk_gb
       from unnest($1::uuid[], $2::text[], $3::int[], $4::int[], $5::int[]) as t(id, name, vcpus, ram_mb, disk_gb)`,
    [
      hosts.map((h) => h.id),
      hosts.map((h) => h.name),
      hosts.map((h) => h.vcpus),
      hosts.map((h) => h.ramMb),
      hosts.map((h) => h.diskGb),
    ],
  );

  // Aggregates and their members: hosts 0-699 default, 700-999 the four dedicated pools.
  const secure = projects.filter((p) => p.isolated);
  const aggregates = [
    { name: 'default', zone: '', metadata: {} as Record<string, string> },
    ...secure.map((p) => ({ name: p.name, zone: '', metadata: { project_id: p.id } })),
    { name: 'hv-ssd', zone: '', metadata: { ssd: 'true' } },
    { name: 'hv-gpu', zone: '', metadata: { gpu: 'true' } },
    { name: 'bm-ssd', zone: '', metadata: { ssd: 'true' } },
    { name: 'bm-az1', zone: 'az1', metadata: {} },
    { name: 'bm-az2', zone: 'az2', metadata: {} },
  ].map((a) => ({ id: newId(), ...a }));
  await client.query(
    `insert into aggregate (id, created_at, updated_at, name, availability_zone, metadata)
     select id, now(), now(), name, zone, metadata
       from unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[]) as t(id, name, zone, metadata)`,
    [
      aggregates.map((a) => a.id),
      aggregates.map((a) => a.name),
      aggregates.map((a) => a.zone),
      aggregates.map((a) => JSON.stringify(a.metadata)),
    ],
  );
  const aggregate = (name: string) => {
    const found = aggregates.find((a) => a.name === name);
    if (!found) throw new Error(`no aggregate ${name}`);
    return found.id;
  };
  const members = { aggregate: [] as string[], kind: [] as string[], member: [] as string[] };
  const add = (name: string, kind: 'node' | 'host', id: string) => {
    members.aggregate.push(aggregate(name));
    members.kind.push(kind);
    members.member.push(id);
  };
  hosts.forEach((h, i) => {
    if (i < 700) {
      add('default', 'host', h.id);
      if (i < 100) add('hv-ssd', 'host', h.id);
      else if (i < 150) add('hv-gpu', 'host', h.id);
    } else {
      add(`secure-${1 + Math.floor((i - 700) / 75)}`, 'host', h.id);
    }
  });
  nodes.id.forEach((id, i) => {
    add(i < NODE_COUNT / 2 ? 'bm-az1' : 'bm-az2', 'node', id);
    if (i % 5 === 0) add('bm-ssd', 'node', id);
  });
  await client.query(
    `insert into aggregate_member (aggregate_id, member_kind, member_id)
     select * from unnest($1::uuid[], $2::text[], $3::uuid[])`,
    [members.aggregate, members.kind, members.member],
  );

  // VMs already running on the hosts, each within its pool and well under capacity.
  const vmFlavors = flavors.filter((f) => f.name.startsWith('vm.'));
  const vms = {
    id: [] as string[],
    name: [] as string[],
    project: [] as string[],
    flavor: [] as string[],
    host: [] as string[],
    vcpus: [] as number[],
    ramMb: [] as number[],
    diskGb: [] as number[],
  };
  for (let i = 0; i < EXISTING_VMS; i++) {
    const hostIndex = Math.floor(random() * HOST_COUNT);
    const host = hosts[hostIndex];
    const flavor = vmFlavors[Math.floor(random() * vmFlavors.length)];
    const project = hostIndex < 700 ? projects[0] : secure[Math.floor((hostIndex - 700) / 75)];
    if (!host || !flavor || !project) throw new Error('bad VM placement');
    vms.id.push(newId());
    vms.name.push(`vm-${i}`);
    vms.project.push(project.id);
    vms.flavor.push(flavor.id);
    vms.host.push(host.id);
    vms.vcpus.push(flavor.vcpus);
    vms.ramMb.push(flavor.ramMb);
    vms.diskGb.push(flavor.diskGb);
  }
  await client.query(
    `insert into instance (id, created_at, updated_at, name, project_id, flavor_id, image, hints,
                           availability_zone, state, reason, host_kind, host_id, vcpus, ram_mb, disk_gb)
     select id, now(), now(), name, project_id, flavor_id, 'ubuntu-24.04', '{}', '', 'active', '', 'host',
            host_id, vcpus, ram_mb, disk_gb
       from unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::uuid[], $6::int[], $7::int[], $8::int[])
         as t(id, name, project_id, flavor_id, host_id, vcpus, ram_mb, disk_gb)`,
    [vms.id, vms.name, vms.project, vms.flavor, vms.host, vms.vcpus, vms.ramMb, vms.diskGb],
  );

  return {
    projects,
    flavors,
    counts: {
      nodes: NODE_COUNT,
      hosts: HOST_COUNT,
      aggregates: aggregates.length,
      members: members.member.length,
      instances: EXISTING_VMS,
    },
  };
}
