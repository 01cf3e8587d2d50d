import type { EntityManager } from '@mikro-orm/sql';
import {
  freeDiskGb,
  freeRamMb,
  freeVcpus,
  type HostState,
  type SchedulerSettings,
} from '../domain/scheduler/host-state.ts';

/** How many candidate nodes one claim statement considers. */
const NODE_BATCH = 16;

/**
 * Claims the best candidate node that is still free, in one statement:
 * rows other transactions are claiming are skipped, and the conditions are
 * checked again on the latest row version, so a node is never claimed twice
 * whatever the schedulers' views said. Returns the node's id, or undefined.
 * Must run inside the transaction that records the instance.
 */
export async function claimNode(
  em: EntityManager,
  candidateIds: readonly string[],
  instanceId: string,
): Promise<string | undefined> {
  for (let start = 0; start < candidateIds.length; start += NODE_BATCH) {
    const batch = candidateIds.slice(start, start + NODE_BATCH);
    const values = batch.map((_, i) => `(?::uuid, ${i})`).join(', ');
    const rows = await em.execute<{ id: string }[]>(
      `update node set instance_id = ?, updated_at = now()
        where id = (select n.id from node n join (values ${values}) as c(id, rank) on n.id = c.id
                     where n.instance_id is null and n.provision_state = 'available' and not n.maintenance
                     order by c.rank limit 1 for update of n skip locked)
        returning id`,
      [instanceId, ...batch],
    );
    if (rows[0]) return rows[0].id;
  }
  return undefined;
}

/**
 * Claims capacity on a hypervisor host: the host row is locked, its usage
 * summed from the instances on it, and the claim refused if it would take
 * the host past its overcommit ratios. Capacity never goes negative.
 *
 * The check runs in a savepoint: a host that turns out full is unlocked at
 * once, so a boot holds at most one host lock and two boots walking their
 * candidates in different orders cannot deadlock.
 */
export async function claimHostCapacity(
  em: EntityManager,
  hostId: string,
  need: { vcpus: number; ramMb: number; diskGb: number },
  settings: SchedulerSettings,
): Promise<boolean> {
  await em.execute('savepoint host_claim');
  const fits = await fitsOnHost(em, hostId, need, settings);
  await em.execute(fits ? 'release savepoint host_claim' : 'rollback to savepoint host_claim');
  return fits;
}

async function fitsOnHost(
  em: EntityManager,
  hostId: string,
  need: { vcpus: number; ramMb: number; diskGb: number },
  settings: SchedulerSettings,
): Promise<boolean> {
  const [host] = await em.execute<{ vcpus: number; ram_mb: number; disk_gb: number }[]>(
    'select vcpus, ram_mb, disk_gb from host where id = ? for update',
    [hostId],
  );
  if (!host) return false;
  const [used] = await em.execute<{ vcpus: number; ram_mb: number; disk_gb: number }[]>(
    `select coalesce(sum(vcpus), 0)::int as vcpus, coalesce(sum(ram_mb), 0)::int as ram_mb,
            coalesce(sum(disk_gb), 0)::int as disk_gb
       from instance where host_kind = 'host' and host_id = ?`,
    [hostId],
  );
  const state = {
    vcpus: host.vcpus,
    ramMb: host.ram_mb,
    diskGb: host.disk_gb,
    usedVcpus: used?.vcpus ?? 0,
    usedRamMb: used?.ram_mb ?? 0,
    usedDiskGb: used?.disk_gb ?? 0,
  } as HostState;
  return (
    freeVcpus(state, settings) >= need.vcpus &&
    freeRamMb(state, settings) >= need.ramMb &&
    freeDiskGb(state, settings) >= need.diskGb
  );
}

/** Gives a node back to the pool, if this instance still holds it. */
export async function releaseNode(em: EntityManager, nodeId: string, instanceId: string): Promise<void> {
  await em.execute(
    'update node set instance_id = null, updated_at = now() where id = ? and instance_id = ?',
    [nodeId, instanceId],
  );
}
