import { DEFAULT_FILTERS } from '../../controller/src/domain/scheduler/filters/index.ts';
import type {
  AggregateInfo,
  HostState,
  RequestSpec,
  SchedulerSettings,
} from '../../controller/src/domain/scheduler/host-state.ts';
import { prepareRequest } from '../../controller/src/domain/scheduler/host-state.ts';
import type { SchedulerConfig } from '../../controller/src/domain/scheduler/scheduler.ts';
import { DEFAULT_WEIGHERS } from '../../controller/src/domain/scheduler/weighers.ts';

/** Scheduler settings as the controller's defaults have them. */
export const SETTINGS: SchedulerConfig = {
  filters: DEFAULT_FILTERS,
  weighers: DEFAULT_WEIGHERS,
  cpuAllocationRatio: 16,
  ramAllocationRatio: 1.5,
  diskAllocationRatio: 1,
  ramWeigherMultiplier: 1,
  defaultAggregate: 'default',
  defaultAvailabilityZone: 'nova',
};

export function aggregate(
  name: string,
  metadata: Record<string, string> = {},
  availabilityZone = '',
): AggregateInfo {
  return { id: `agg-${name}`, name, availabilityZone, metadata };
}

export function hypervisor(name: string, over: Partial<HostState> = {}): HostState {
  return {
    kind: 'host',
    id: `host-${name}`,
    name,
    vcpus: 32,
    ramMb: 131072,
    diskGb: 2000,
    usedVcpus: 0,
    usedRamMb: 0,
    usedDiskGb: 0,
    aggregates: [],
    provisionState: '',
    maintenance: false,
    instanceId: null,
    ...over,
  };
}

export function node(name: string, over: Partial<HostState> = {}): HostState {
  return {
    kind: 'node',
    id: `node-${name}`,
    name,
    vcpus: 8,
    ramMb: 16384,
    diskGb: 500,
    usedVcpus: 0,
    usedRamMb: 0,
    usedDiskGb: 0,
    aggregates: [],
    provisionState: 'available',
    maintenance: false,
    instanceId: null,
    ...over,
  };
}

export interface RequestInput {
  project?: string;
  isolated?: boolean;
  vcpus?: number;
  ramMb?: number;
  diskGb?: number;
  extraSpecs?: Record<string, string>;
  hints?: Record<string, string>;
  availabilityZone?: string;
}

export function request(
  input: RequestInput,
  aggregates: readonly AggregateInfo[],
  settings: Pick<SchedulerSettings, 'defaultAggregate'> = SETTINGS,
): RequestSpec {
  return prepareRequest(
    {
      projectId: input.project ?? 'p-common',
      projectName: input.project ?? 'common',
      projectIsolated: input.isolated ?? false,
      flavor: {
        vcpus: input.vcpus ?? 2,
        ramMb: input.ramMb ?? 4096,
        diskGb: input.diskGb ?? 40,
        extraSpecs: input.extraSpecs ?? {},
      },
      hints: input.hints ?? {},
      availabilityZone: input.availabilityZone ?? '',
    },
    aggregates,
    settings,
  );
}
