import type { PlacementRequest } from '../../controller/src/conductor/placement.ts';
import type { Inventory } from './inventory.ts';
import { prng } from './inventory.ts';

/** The three kinds of scheduling request the benchmark mixes. */
export const REQUEST_KINDS = ['bare-metal', 'vm-default', 'vm-dedicated'] as const;
export type RequestKind = (typeof REQUEST_KINDS)[number];

/** One request, both as the conductor takes it and as a gRPC caller names it. */
export interface BenchRequest {
  kind: RequestKind;
  placement: PlacementRequest;
  /** SchedulingRequest fields, by name. */
  rpc: { project: string; flavor: string; hints: Record<string, string>; availabilityZone: string };
}

/** Bare-metal flavors by share of bare-metal requests. */
const BM_FLAVORS: [string, number][] = [
  ['bm.small', 0.35],
  ['bm.medium', 0.3],
  ['bm.large', 0.15],
  ['bm.xlarge', 0.1],
  ['bm.medium-ssd', 0.1],
];
const VM_FLAVORS = ['vm.small', 'vm.medium', 'vm.large'];

/**
 * A deterministic mix: 40 % bare metal (`compute_type=bare_metal`, a tenth of
 * them pinned to zone az1), 30 % VMs of `common` (the `default` aggregate),
 * 30 % VMs of an isolated project with its dedicated aggregate.
 */
export function requestMix(inventory: Inventory, count: number, seed: number): BenchRequest[] {
  const random = prng(seed);
  const common = inventory.projects.find((p) => p.name === 'common');
  const secure = inventory.projects.filter((p) => p.isolated);
  if (!common || secure.length === 0) throw new Error('inventory has no common or isolated project');
  const choose = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
  const out: BenchRequest[] = [];
  for (let i = 0; i < count; i++) {
    const r = random();
    if (r < 0.4) {
      const flavor = weighted(BM_FLAVORS, random());
      out.push(build(inventory, 'bare-metal', common, flavor, random() < 0.1 ? 'az1' : ''));
    } else if (r < 0.7) {
      out.push(build(inventory, 'vm-default', common, choose(VM_FLAVORS), ''));
    } else {
      out.push(build(inventory, 'vm-dedicated', choose(secure), choose(VM_FLAVORS), ''));
    }
  }
  return out;
}

/** The item whose share `pick` (0..1) falls into. */
function weighted(items: readonly [string, number][], pick: number): string {
  let left = pick;
  for (const [item, share] of items) {
    left -= share;
    if (left < 0) return item;
  }
  return items[0]?.[0] ?? '';
}

function build(
  inventory: Inventory,
  kind: RequestKind,
  project: Inventory['projects'][number],
  flavorName: string,
  zone: string,
): BenchRequest {
  const flavor = inventory.flavors.find((f) => f.name === flavorName);
  if (!flavor) throw new Error(`no flavor ${flavorName}`);
  const hints: Record<string, string> = kind === 'bare-metal' ? { compute_type: 'bare_metal' } : {};
  return {
    kind,
    placement: {
      projectId: project.id,
      projectName: project.name,
      projectIsolated: project.isolated,
      flavor: {
        vcpus: flavor.vcpus,
        ramMb: flavor.ramMb,
        diskGb: flavor.diskGb,
        extraSpecs: flavor.extraSpecs,
      },
      hints,
      availabilityZone: zone,
    },
    rpc: { project: project.name, flavor: flavor.name, hints, availabilityZone: zone },
  };
}
