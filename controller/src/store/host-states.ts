import type { EntityManager } from '@mikro-orm/sql';
import type { AggregateInfo, HostState } from '../domain/scheduler/host-state.ts';
import type { Database } from './orm.ts';

/** Every schedulable host with its aggregates and claimed capacity, read in four queries. */
export async function loadHostStates(
  em: EntityManager,
): Promise<{ hosts: HostState[]; aggregates: AggregateInfo[] }> {
  const [aggregateRows, memberRows, nodeRows, hostRows] = await Promise.all([
    em.execute<AggregateRow[]>('select id, name, availability_zone, metadata from aggregate'),
    em.execute<MemberRow[]>('select aggregate_id, member_id from aggregate_member'),
    em.execute<NodeRow[]>(
      'select id, name, cpus, ram_mb, disk_gb, provision_state, maintenance, instance_id from node',
    ),
    em.execute<HostRow[]>(
      `select h.id, h.name, h.vcpus, h.ram_mb, h.disk_gb,
              coalesce(sum(i.vcpus), 0)::int as used_vcpus, coalesce(sum(i.ram_mb), 0)::int as used_ram_mb,
              coalesce(sum(i.disk_gb), 0)::int as used_disk_gb
         from host h left join instance i on i.host_kind = 'host' and i.host_id = h.id
        group by h.id, h.name, h.vcpus, h.ram_mb, h.disk_gb`,
    ),
  ]);
  const aggregates: AggregateInfo[] = aggregateRows.map((a) => ({
    id: a.id,
    name: a.name,
    availabilityZone: a.availability_zone,
    metadata: typeof a.metadata === 'string' ? JSON.parse(a.metadata) : a.metadata,
  }));
  const byId = new Map(aggregates.map((a) => [a.id, a]));
  const membership = new Map<string, AggregateInfo[]>();
  for (const m of memberRows) {
    const aggregate = byId.get(m.aggregate_id);
    if (!aggregate) continue;
    const list = membership.get(m.member_id) ?? [];
    list.push(aggregate);
    membership.set(m.member_id, list);
  }
  const hosts: HostState[] = [];
  for (const n of nodeRows) {
    hosts.push({
      kind: 'node',
      id: n.id,
      name: n.name,
      vcpus: n.cpus,
      ramMb: n.ram_mb,
      diskGb: n.disk_gb,
      usedVcpus: 0,
      usedRamMb: 0,
      usedDiskGb: 0,
      aggregates: membership.get(n.id) ?? [],
      provisionState: n.provision_state,
      maintenance: n.maintenance,
      instanceId: n.instance_id,
    });
  }
  for (const h of hostRows) {
    hosts.push({
      kind: 'host',
      id: h.id,
      name: h.name,
      vcpus: h.vcpus,
      ramMb: h.ram_mb,
      diskGb: h.disk_gb,
      usedVcpus: h.used_vcpus,
      usedRamMb: h.used_ram_mb,
      usedDiskGb: h.used_disk_gb,
      aggregates: membership.get(h.id) ?? [],
      provisionState: '',
      maintenance: false,
      instanceId: null,
    });
  }
  return { hosts, aggregates };
}

interface AggregateRow {
  id: string;
  name: string;
  availability_zone: string;
  metadata: Record<string, string> | string;
}
interface MemberRow {
  aggregate_id: string;
  member_id: string;
}
interface NodeRow {
  id: string;
  name: string;
  cpus: number;
  ram_mb: number;
  disk_gb: number;
  provision_state: string;
  maintenance: boolean;
  instance_id: string | null;
}
interface HostRow {
  id: string;
  name: string;
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
  used_vcpus: number;
  used_ram_mb: number;
  used_disk_gb: number;
}

/** A claim as the cache applies it. */
export interface ClaimDelta {
  hostKind: 'node' | 'host';
  hostId: string;
  instanceId: string;
  vcpus: number;
  ramMb: number;
  diskGb: number;
}

/**
 * The scheduler's view of the inventory, kept in memory so a decision over
 * ten thousand hosts costs no query. It is only a hint: claims are checked
 * again by the database, so a stale view costs a retry, never a double
 * booking. After an inventory change through this controller the next
 * decision waits for a fresh view; a view merely older than `maxAgeMs`
 * (other controllers' changes) is refreshed in the background while
 * decisions go on with it. This controller's own claims are applied in place.
 */
export class HostStateCache {
  readonly #db: Database;
  readonly #maxAgeMs: number;
  #view: { hosts: HostState[]; aggregates: AggregateInfo[] } | undefined;
  #byId = new Map<string, HostState>();
  #loadedAt = 0;
  /** Bumped by invalidate(); a view loaded under an older one is not trusted. */
  #generation = 0;
  #viewGeneration = -1;
  #loading: Promise<{ hosts: HostState[]; aggregates: AggregateInfo[] }> | undefined;
  #loadingGeneration = -1;

  /** @param maxAgeMs how stale the view may get before a background refresh. @default 1000 */
  constructor(db: Database, maxAgeMs = 1000) {
    this.#db = db;
    this.#maxAgeMs = maxAgeMs;
  }

  async get(): Promise<{ hosts: HostState[]; aggregates: AggregateInfo[] }> {
    if (!this.#view || this.#viewGeneration !== this.#generation) return this.#load();
    if (Date.now() - this.#loadedAt >= this.#maxAgeMs) {
      this.#load().catch(() => {
        // The next decision that needs a fresh view reports the failure.
      });
    }
    return this.#view;
  }

  /** Loads the view; a load started before the latest invalidation does not count as fresh. */
  #load(): Promise<{ hosts: HostState[]; aggregates: AggregateInfo[] }> {
    if (this.#loading && this.#loadingGeneration === this.#generation) return this.#loading;
    const generation = this.#generation;
    const started = Date.now();
    const loading = loadHostStates(this.#db.fork()).then(
      (view) => {
        if (this.#loading === loading) this.#loading = undefined;
        if (generation >= this.#viewGeneration) {
          this.#view = view;
          this.#byId = new Map(view.hosts.map((h) => [`${h.kind}:${h.id}`, h]));
          this.#viewGeneration = generation;
          this.#loadedAt = started;
        }
        return view;
      },
      (err: unknown) => {
        if (this.#loading === loading) this.#loading = undefined;
        throw err;
      },
    );
    this.#loading = loading;
    this.#loadingGeneration = generation;
    return loading;
  }

  /** The next `get` reads the database again. */
  invalidate(): void {
    this.#generation++;
  }

  /** Applies (sign 1) or releases (sign -1) a claim this controller committed. */
  apply(delta: ClaimDelta, sign: 1 | -1): void {
    const host = this.#byId.get(`${delta.hostKind}:${delta.hostId}`);
    if (!host) return;
    if (host.kind === 'node') {
      host.instanceId = sign === 1 ? delta.instanceId : null;
    } else {
      host.usedVcpus += sign * delta.vcpus;
      host.usedRamMb += sign * delta.ramMb;
      host.usedDiskGb += sign * delta.diskGb;
    }
  }
}
