/** What the scheduler knows of a candidate host: a bare-metal node or a hypervisor host. */
export interface HostState {
  kind: 'node' | 'host';
  id: string;
  name: string;
  vcpus: number;
  ramMb: number;
  diskGb: number;
  /** Claimed by instances (hypervisor hosts); zero for nodes, which host one instance. */
  usedVcpus: number;
  usedRamMb: number;
  usedDiskGb: number;
  aggregates: readonly AggregateInfo[];
  /** Nodes only. */
  provisionState: string;
  maintenance: boolean;
  instanceId: string | null;
}

export interface AggregateInfo {
  id: string;
  name: string;
  availabilityZone: string;
  metadata: Readonly<Record<string, string>>;
}

export interface FlavorSpec {
  vcpus: number;
  ramMb: number;
  diskGb: number;
  extraSpecs: Readonly<Record<string, string>>;
}

/** A request as the filters see it, prepared once per scheduling call. */
export interface RequestSpec {
  projectId: string;
  projectName: string;
  projectIsolated: boolean;
  flavor: FlavorSpec;
  hints: Readonly<Record<string, string>>;
  /** Empty for any zone. */
  availabilityZone: string;
  /** `compute_type=bare_metal` was hinted: only bare-metal nodes qualify. */
  bareMetal: boolean;
  /**
   * Flavor extra specs that aggregates must carry: scoped
   * `aggregate_instance_extra_specs:key` ones, and unscoped keys (no `:`) as nova does.
   */
  aggregateSpecs: readonly (readonly [string, string])[];
  /**
   * Aggregates a VM of this project may land in: its dedicated ones, else the
   * default aggregate, else none (an isolated project with no aggregate).
   */
  homeAggregateIds: ReadonlySet<string>;
}

/** What a caller asks for, resolved to ids; prepareRequest works out the rest. */
export type RequestInput = Omit<RequestSpec, 'bareMetal' | 'homeAggregateIds' | 'aggregateSpecs'>;

/** Knobs of the filters and weighers; see config. */
export interface SchedulerSettings {
  cpuAllocationRatio: number;
  ramAllocationRatio: number;
  diskAllocationRatio: number;
  /** Positive spreads VMs across hypervisor hosts by free RAM, negative packs them. */
  ramWeigherMultiplier: number;
  /** Name of the aggregate for projects with none of their own (the seed's `default`). */
  defaultAggregate: string;
  /** Zone of hosts in no zoned aggregate. */
  defaultAvailabilityZone: string;
}

export const PROJECT_ID_KEY = 'project_id';
export const COMPUTE_TYPE_HINT = 'compute_type';
export const BARE_METAL = 'bare_metal';
const AGGREGATE_SPEC_SCOPE = 'aggregate_instance_extra_specs:';

/** Builds the per-request view the filters use, from the aggregates the inventory has. */
export function prepareRequest(
  input: RequestInput,
  aggregates: readonly AggregateInfo[],
  settings: Pick<SchedulerSettings, 'defaultAggregate'>,
): RequestSpec {
  const own = aggregates.filter((a) => a.metadata[PROJECT_ID_KEY] === input.projectId).map((a) => a.id);
  let home = own;
  if (own.length === 0 && !input.projectIsolated) {
    home = aggregates.filter((a) => a.name === settings.defaultAggregate).map((a) => a.id);
  }
  const aggregateSpecs: [string, string][] = [];
  for (const [key, value] of Object.entries(input.flavor.extraSpecs)) {
    if (key.startsWith(AGGREGATE_SPEC_SCOPE))
      aggregateSpecs.push([key.slice(AGGREGATE_SPEC_SCOPE.length), value]);
    else if (!key.includes(':')) aggregateSpecs.push([key, value]);
  }
  return {
    ...input,
    aggregateSpecs,
    bareMetal: input.hints[COMPUTE_TYPE_HINT] === BARE_METAL,
    homeAggregateIds: new Set(home),
  };
}

/** Capacity left for VMs on a hypervisor host, with overcommit. */
export function freeVcpus(host: HostState, settings: SchedulerSettings): number {
  return host.vcpus * settings.cpuAllocationRatio - host.usedVcpus;
}
export function freeRamMb(host: HostState, settings: SchedulerSettings): number {
  return host.ramMb * settings.ramAllocationRatio - host.usedRamMb;
}
export function freeDiskGb(host: HostState, settings: SchedulerSettings): number {
  return host.diskGb * settings.diskAllocationRatio - host.usedDiskGb;
}
