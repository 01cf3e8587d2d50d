import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateInstanceRequest,
  type Instance,
  InstanceServiceClient,
} from '../../build/gen/ingot/v1/instance.ts';
import type { Node } from '../../build/gen/ingot/v1/inventory.ts';
import type { SchedulingRequest } from '../../build/gen/ingot/v1/scheduler.ts';
import { type CallError, createPgDatabase, decodeError, InventoryApi } from '../support/controller.ts';
import { type ControllerProcess, type Exit, ProcessTracker } from '../support/process.ts';

// The scheduler's claims are atomic across controllers: two real `ingot-controller` processes share
// one real PostgreSQL, each with its own in-memory view of the inventory, and take a burst of
// simultaneous boots. Only the database's row locks stand between them and a double booking, so
// the counts below must come out exact whatever order the boots interleave in.

const pgUrl = process.env.INGOT_TEST_PG_URL;
/** Safety nets only: two controller starts and ~125 inventory calls take ~12 s here. */
const SETUP_MS = 120_000;
const BURST_MS = 60_000;

const NODES = 100;
const BARE_METAL_BOOTS = 200;

// Defaults of the controller's config: cpuAllocationRatio 16, ramAllocationRatio 1.5,
// diskAllocationRatio 1. RAM binds: 4096 MiB × 1.5 = 6144 MiB = 6 × 1024 MiB, while vCPUs
// (8 × 16 = 128 = 64 × 2) and disk (100 × 1 = 100 = 10 × 10) would allow more.
const HOST = { vcpus: 8, ramMb: 4096, diskGb: 100 };
const VM_FLAVOR = { vcpus: 2, ramMb: 1024, diskGb: 10 };
const RATIOS = { cpu: 16, ram: 1.5, disk: 1 };
const PER_HOST = 6;
const HOSTS = 10;
const CAPACITY = HOSTS * PER_HOST;
const VM_BOOTS = 2 * CAPACITY + 30;

const tracker = new ProcessTracker();
const tempDirs: string[] = [];
let database = '';

/** A CreateInstance request; the client fills in the rest. */
type Boot = { name: string; request: Partial<SchedulingRequest> };

/** How one CreateInstance call ended. */
type Outcome = { instance: Instance } | { error: CallError };

/** The generated InstanceService client with a promise for CreateInstance; rejects with a CallError. */
class InstanceApi {
  readonly client: InstanceServiceClient;
  readonly #token: string;

  constructor(address: string, token: string) {
    this.client = new InstanceServiceClient(address, grpc.credentials.createInsecure());
    this.#token = token;
  }

  create(request: Boot): Promise<Instance> {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${this.#token}`);
    return new Promise((resolve, reject) =>
      this.client.createInstance(CreateInstanceRequest.fromPartial(request), metadata, (err, res) =>
        err ? reject(decodeError(err)) : resolve(res),
      ),
    );
  }

  close(): void {
    this.client.close();
  }
}

function tempDir(): string {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'ingot-claims-')));
  tempDirs.push(dir);
  return dir;
}

async function dropDatabase(url: string): Promise<void> {
  if (!pgUrl || !url) return;
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  try {
    await admin.query(`drop database if exists "${new URL(url).pathname.slice(1)}" with (force)`);
  } finally {
    await admin.end();
  }
}

async function query<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: database });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** Runs `fn` over `items`, `width` at a time (inventory setup; the bursts fire everything at once). */
async function inBatches<T>(items: T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(fn));
}

/** Starts every boot before awaiting any, alternating between the two controllers. */
async function burst(count: number, request: (i: number) => Boot): Promise<Outcome[]> {
  const calls = Array.from({ length: count }, (_, i) => {
    return (i % 2 === 0 ? instancesA : instancesB).create(request(i)).then(
      (instance): Outcome => ({ instance }),
      (error: CallError): Outcome => ({ error }),
    );
  });
  return Promise.all(calls);
}

function succeeded(outcomes: Outcome[]): Instance[] {
  return outcomes.flatMap((o) => ('instance' in o ? [o.instance] : []));
}

function failed(outcomes: Outcome[]): CallError[] {
  return outcomes.flatMap((o) => ('error' in o ? [o.error] : []));
}

/**
 * How the calls ended, as `OK` or `<code> <reason>` counts, so that one assertion shows every
 * kind of outcome; the first unexpected error comes with its controller log lines.
 */
function expectTally(outcomes: Outcome[], expected: Record<string, number>): void {
  const tally: Record<string, number> = {};
  for (const o of outcomes) {
    const key = 'instance' in o ? 'OK' : `${grpc.status[o.error.code]} ${o.error.reason}`;
    tally[key] = (tally[key] ?? 0) + 1;
  }
  const unexpected = failed(outcomes).find((e) => e.reason !== 'NO_VALID_HOST');
  expect(tally, unexpected && explain(unexpected)).toEqual(expected);
}

/** Every refusal is the scheduler's NO_VALID_HOST, with a reason a tenant can read. */
function expectNoValidHost(errors: CallError[]): void {
  for (const error of errors) {
    expect(error, explain(error)).toMatchObject({
      code: grpc.status.RESOURCE_EXHAUSTED,
      reason: 'NO_VALID_HOST',
    });
    expect(error.message, explain(error)).toMatch(/^no valid host: \S/);
  }
}

/** The error, with the controller's log lines for its correlation id (an INTERNAL error's details). */
function explain(error: CallError): string {
  const id = error.metadata?.correlation_id;
  const lines = id ? [controllerA, controllerB].flatMap((c) => c.lines.filter((l) => l.includes(id))) : [];
  return [JSON.stringify(error), ...lines].join('\n');
}

let controllerA: ControllerProcess;
let controllerB: ControllerProcess;
let inventory: InventoryApi;
let instancesA: InstanceApi;
let instancesB: InstanceApi;
const nodeIds = new Set<string>();
const hostIds = new Map<string, string>();
let outsideHostId = '';

beforeAll(async () => {
  database = await createPgDatabase();
  const dirA = tempDir();
  const dirB = join(tempDir(), 'state');
  const args = (dataDir: string) => [
    '--database',
    database,
    '--data-dir',
    dataDir,
    '--grpc-listen',
    '127.0.0.1:0',
    '--http-listen',
    '127.0.0.1:0',
  ];

  // A creates the schema, the secret key and the first admin token; B starts on the same database
  // with A's key (as an operator copies it to a second machine) and mints no token of its own.
  controllerA = tracker.spawn(args(dirA));
  const servingA = await controllerA.serving();
  mkdirSync(dirB, { mode: 0o700 });
  copyFileSync(join(dirA, 'secret.key'), join(dirB, 'secret.key'));
  controllerB = tracker.spawn(args(dirB));
  const servingB = await controllerB.serving();
  const token = readFileSync(join(dirA, 'admin.token'), 'utf8').trim();

  inventory = new InventoryApi(servingA.grpc, token);
  instancesA = new InstanceApi(servingA.grpc, token);
  instancesB = new InstanceApi(servingB.grpc, token);

  // All inventory first: B reads it on its first boot, so neither view starts without it.
  await inventory.call('createProject', { project: { name: 'tenant' } });
  await inventory.call('createFlavor', { flavor: { name: 'bm-4c', vcpus: 4, ramMb: 8192, diskGb: 100 } });
  await inventory.call('createFlavor', { flavor: { name: 'vm-1g', ...VM_FLAVOR } });
  await inBatches(
    Array.from({ length: NODES }, (_, i) => i + 1),
    10,
    async (i) => {
      const node = await inventory.call('createNode', {
        node: {
          ip: `10.20.0.${i}`,
          mac: `52:54:00:20:00:${i.toString(16).padStart(2, '0')}`,
          cpus: 4,
          ramMb: 8192,
          diskGb: 100,
          bmcAddress: `10.21.0.${i}`,
        },
      });
      nodeIds.add(node.id);
    },
  );
  await inventory.call('createAggregate', { aggregate: { name: 'default', availabilityZone: 'nova' } });
  await inBatches(
    Array.from({ length: HOSTS }, (_, i) => `compute-${i + 1}`),
    10,
    async (name) => {
      const host = await inventory.call('createHost', { host: { name, ...HOST } });
      hostIds.set(host.id, name);
      await inventory.call('addAggregateHost', { aggregate: 'default', host: name });
    },
  );
  // In no aggregate: the tenant's VMs may not land here, however full the others get.
  outsideHostId = (await inventory.call('createHost', { host: { name: 'compute-outside', ...HOST } })).id;
}, SETUP_MS);

afterAll(async () => {
  inventory?.close();
  instancesA?.close();
  instancesB?.close();
  const exits: (Exit | undefined)[] = [];
  try {
    for (const ctl of [controllerA, controllerB]) exits.push(ctl ? await ctl.terminate() : undefined);
  } finally {
    await tracker.killAll();
    for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
    await dropDatabase(database);
  }
  for (const exit of exits) if (exit) expect(exit).toEqual({ code: 0, signal: null });
}, SETUP_MS);

describe('two controllers on one PostgreSQL', () => {
  it(
    `boot ${BARE_METAL_BOOTS} bare-metal instances at once onto ${NODES} free nodes: exactly ${NODES} win, each its own node`,
    async () => {
      const outcomes = await burst(BARE_METAL_BOOTS, (i) => ({
        name: `bm-${String(i).padStart(3, '0')}`,
        request: {
          project: 'tenant',
          flavor: 'bm-4c',
          image: 'debian-13',
          hints: { compute_type: 'bare_metal' },
        },
      }));

      expectTally(outcomes, { OK: NODES, 'RESOURCE_EXHAUSTED NO_VALID_HOST': BARE_METAL_BOOTS - NODES });
      const won = succeeded(outcomes);
      expectNoValidHost(failed(outcomes));
      for (const instance of won) {
        expect(instance).toMatchObject({ hostKind: 'node', projectId: expect.any(String) });
        expect(nodeIds.has(instance.hostId), instance.hostId).toBe(true);
      }
      const claimedNodes = new Set(won.map((i) => i.hostId));
      expect(claimedNodes.size).toBe(NODES);

      // The inventory agrees: every node names the one instance that claimed it.
      const nodes: Node[] = [];
      let pageToken = '';
      do {
        const page = await inventory.call('listNodes', { pageSize: 1000, pageToken });
        nodes.push(...page.nodes);
        pageToken = page.nextPageToken;
      } while (pageToken);
      expect(nodes).toHaveLength(NODES);
      const holder = new Map(nodes.filter((n) => n.instanceId).map((n) => [n.id, n.instanceId]));
      expect(holder.size).toBe(NODES);
      expect(new Map(won.map((i) => [i.hostId, i.id]))).toEqual(holder);

      // And so does the database, read past both controllers.
      expect(
        await query(
          `select host_id, count(*) from instance where host_kind = 'node' group by host_id having count(*) > 1`,
        ),
      ).toEqual([]);
      expect(await query(`select id from node where instance_id is null`)).toEqual([]);
      expect(
        await query(
          `select i.id from instance i left join node n on n.id = i.host_id
          where i.host_kind = 'node' and n.instance_id is distinct from i.id`,
        ),
      ).toEqual([]);
      expect(await query(`select count(*)::int as n from instance where host_kind = 'node'`)).toEqual([
        { n: NODES },
      ]);
    },
    BURST_MS,
  );

  it(
    `boot ${VM_BOOTS} VMs at once onto ${HOSTS} hypervisor hosts of the default aggregate: exactly their capacity (${CAPACITY}) wins, no host past its ratios`,
    async () => {
      const outcomes = await burst(VM_BOOTS, (i) => ({
        name: `vm-${String(i).padStart(3, '0')}`,
        request: { project: 'tenant', flavor: 'vm-1g', image: 'debian-13' },
      }));

      // Never past a ratio, whatever else went wrong: the database's sums per host.
      const usage = await query<{ id: string; vms: number; vcpus: number; ram_mb: number; disk_gb: number }>(
        `select h.id, count(i.id)::int as vms, coalesce(sum(i.vcpus), 0)::int as vcpus,
              coalesce(sum(i.ram_mb), 0)::int as ram_mb, coalesce(sum(i.disk_gb), 0)::int as disk_gb
         from host h left join instance i on i.host_kind = 'host' and i.host_id = h.id
        group by h.id`,
      );
      expect(usage).toHaveLength(HOSTS + 1);
      for (const host of usage) {
        expect(host.vcpus, host.id).toBeLessThanOrEqual(HOST.vcpus * RATIOS.cpu);
        expect(host.ram_mb, host.id).toBeLessThanOrEqual(HOST.ramMb * RATIOS.ram);
        expect(host.disk_gb, host.id).toBeLessThanOrEqual(HOST.diskGb * RATIOS.disk);
      }

      // Every boot that could fit did: the hosts are exactly full, the rest were refused.
      expectTally(outcomes, { OK: CAPACITY, 'RESOURCE_EXHAUSTED NO_VALID_HOST': VM_BOOTS - CAPACITY });
      expectNoValidHost(failed(outcomes));
      const perHost = new Map<string, number>();
      for (const instance of succeeded(outcomes)) {
        expect(instance).toMatchObject({ hostKind: 'host', ...VM_FLAVOR });
        expect(hostIds.has(instance.hostId), `${instance.hostId} is not in the default aggregate`).toBe(true);
        perHost.set(instance.hostId, (perHost.get(instance.hostId) ?? 0) + 1);
      }
      expect([...perHost.values()]).toEqual(Array(HOSTS).fill(PER_HOST));
      for (const host of usage) expect(host.vms, host.id).toBe(host.id === outsideHostId ? 0 : PER_HOST);
    },
    BURST_MS,
  );
});
