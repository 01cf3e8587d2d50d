import { UniqueConstraintViolationException } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/sql';
import { AlreadyExistsError } from '../domain/errors.ts';
import type { HostState, SchedulerSettings } from '../domain/scheduler/host-state.ts';
import { claimHostCapacity, claimNode, releaseNode } from './claims.ts';
import { Instance } from './entities/instance.ts';
import type { ClaimDelta } from './host-states.ts';
import { newId } from './ids.ts';

export interface BootInput {
  name: string;
  projectId: string;
  flavorId: string;
  image: string;
  hints: Record<string, string>;
  availabilityZone: string;
  vcpus: number;
  ramMb: number;
  diskGb: number;
  /** The project network a bare-metal instance goes on. */
  networkId: string | null;
  /** The resolved image, when `image` names one in the image store. */
  imageId: string | null;
}

/** How many hypervisor hosts one boot tries before giving up on a stale view. */
const MAX_HOST_TRIES = 20;

/**
 * Claims the first candidate that is still free and records the instance
 * on it, in one transaction; undefined when every candidate was taken.
 */
export async function claimAndRecord(
  em: EntityManager,
  input: BootInput,
  candidates: readonly HostState[],
  settings: SchedulerSettings,
): Promise<{ instance: Instance; claim: ClaimDelta } | undefined> {
  try {
    return await em.transactional(async (tx) => {
      const id = newId();
      const hostId = await claimFirst(tx, candidates, id, input, settings);
      if (!hostId) return undefined;
      const hostKind = candidates.find((c) => c.id === hostId)?.kind ?? 'node';
      const instance = tx.create(Instance, {
        id,
        ...input,
        state: 'scheduled',
        reason: '',
        hostKind,
        hostId,
        // A bare-metal node is provisioned by the conductor; a hypervisor placement is only a claim.
        flow: hostKind === 'node' ? 'deploy' : null,
      });
      await tx.flush();
      return { instance, claim: { hostKind, hostId, instanceId: id, ...pick(input) } };
    });
  } catch (err) {
    if (err instanceof UniqueConstraintViolationException)
      throw new AlreadyExistsError('instance', 'name', input.name);
    throw err;
  }
}

async function claimFirst(
  tx: EntityManager,
  candidates: readonly HostState[],
  instanceId: string,
  need: BootInput,
  settings: SchedulerSettings,
): Promise<string | undefined> {
  let hostTries = 0;
  for (let i = 0; i < candidates.length; ) {
    const first = candidates[i];
    if (!first) break;
    if (first.kind === 'node') {
      let end = i;
      while (candidates[end]?.kind === 'node') end++;
      const claimed = await claimNode(
        tx,
        candidates.slice(i, end).map((c) => c.id),
        instanceId,
      );
      if (claimed) return claimed;
      i = end;
    } else {
      if (++hostTries > MAX_HOST_TRIES) break;
      if (await claimHostCapacity(tx, first.id, need, settings)) return first.id;
      i++;
    }
  }
  return undefined;
}

/** Deletes the instance and gives back what it claimed, in one transaction. */
export async function deleteInstance(em: EntityManager, instance: Instance): Promise<ClaimDelta> {
  await em.transactional(async (tx) => {
    if (instance.hostKind === 'node') await releaseNode(tx, instance.hostId, instance.id);
    await tx.nativeDelete(Instance, { id: instance.id });
  });
  return { hostKind: instance.hostKind, hostId: instance.hostId, instanceId: instance.id, ...pick(instance) };
}

function pick(r: { vcpus: number; ramMb: number; diskGb: number }) {
  return { vcpus: r.vcpus, ramMb: r.ramMb, diskGb: r.diskGb };
}
