import { DeadlockException } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/sql';
import { NoValidHostError } from '../domain/errors.ts';
import type { RequestInput } from '../domain/scheduler/host-state.ts';
import { prepareRequest } from '../domain/scheduler/host-state.ts';
import type { Selection, SelectOptions } from '../domain/scheduler/pipeline.ts';
import type { Scheduler } from '../domain/scheduler/scheduler.ts';
import type { Instance } from '../store/entities/instance.ts';
import type { HostStateCache } from '../store/host-states.ts';
import { type BootInput, claimAndRecord, deleteInstance } from '../store/instances.ts';

/** What a caller asks for, resolved to ids (see prepareRequest for the rest). */
export type PlacementRequest = RequestInput;

/** How many of the best hosts a boot tries to claim before looking again. */
const BOOT_CANDIDATES = 64;

/**
 * Scheduling against the cached view of the inventory, and boots that claim
 * their host in the same transaction that records the instance. A view gone
 * stale (another controller claimed the host first) costs one fresh look.
 */
export class Placement {
  readonly #scheduler: Scheduler;
  readonly #cache: HostStateCache;

  constructor(scheduler: Scheduler, cache: HostStateCache) {
    this.#scheduler = scheduler;
    this.#cache = cache;
  }

  async select(request: PlacementRequest, opts: SelectOptions): Promise<Selection> {
    const { hosts, aggregates } = await this.#cache.get();
    return this.#scheduler.select(hosts, prepareRequest(request, aggregates, this.#scheduler.settings), opts);
  }

  /** Throws NoValidHostError (RESOURCE_EXHAUSTED) when no host passes or every candidate was taken. */
  async boot(em: EntityManager, request: PlacementRequest, input: BootInput): Promise<Instance> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const selection = await this.select(request, { explain: false, limit: BOOT_CANDIDATES });
      if (selection.ranked.length === 0) throw new NoValidHostError(selection.noValidHost);
      const candidates = selection.ranked.map((w) => w.host);
      const booked = await retryConflicts(() =>
        claimAndRecord(em, input, candidates, this.#scheduler.settings),
      );
      if (booked) {
        this.#cache.apply(booked.claim, 1);
        return booked.instance;
      }
      this.#cache.invalidate();
    }
    throw new NoValidHostError(
      'no valid host: every candidate was claimed by concurrent requests before this one could; retry',
    );
  }

  async release(em: EntityManager, instance: Instance): Promise<void> {
    this.#cache.apply(await deleteInstance(em, instance), -1);
  }

  /** Inventory changed: the next decision reads it again. */
  inventoryChanged(): void {
    this.#cache.invalidate();
  }
}

/** Attempts at a claim transaction that PostgreSQL aborted to break a lock conflict. */
const CONFLICT_ATTEMPTS = 3;

/**
 * Runs a claim transaction again when PostgreSQL aborted it as a deadlock
 * victim or a serialization failure: the other transaction won, this one
 * simply tries again with what is left.
 */
async function retryConflicts<T>(run: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (err) {
      const transient = err instanceof DeadlockException || (err as { code?: string }).code === '40001';
      if (!transient || attempt >= CONFLICT_ATTEMPTS) throw err;
    }
  }
}
