import {
  freeDiskGb,
  freeRamMb,
  freeVcpus,
  type HostState,
  type RequestSpec,
  type SchedulerSettings,
} from '../host-state.ts';
import type { HostFilter } from './host-filter.ts';

/**
 * A bare-metal node must cover the flavor by itself (it hosts one instance);
 * a hypervisor host must have that much left after overcommit.
 */
function resourceFilter(
  name: string,
  unit: string,
  wanted: (request: RequestSpec) => number,
  total: (host: HostState) => number,
  free: (host: HostState, settings: SchedulerSettings) => number,
  settings: SchedulerSettings,
): HostFilter {
  const available = (host: HostState) => (host.kind === 'node' ? total(host) : free(host, settings));
  return {
    name,
    passes: (host, request) => available(host) >= wanted(request),
    why: (host, request) =>
      host.kind === 'node'
        ? `has ${total(host)} ${unit}, the flavor needs ${wanted(request)}`
        : `has ${Math.max(0, available(host))} ${unit} free, the flavor needs ${wanted(request)}`,
  };
}

export const vcpuFilter = (settings: SchedulerSettings): HostFilter =>
  resourceFilter(
    'VcpuFilter',
    'vCPUs',
    (r) => r.flavor.vcpus,
    (h) => h.vcpus,
    freeVcpus,
    settings,
  );

export const ramFilter = (settings: SchedulerSettings): HostFilter =>
  resourceFilter(
    'RamFilter',
    'MiB RAM',
    (r) => r.flavor.ramMb,
    (h) => h.ramMb,
    freeRamMb,
    settings,
  );

export const diskFilter = (settings: SchedulerSettings): HostFilter =>
  resourceFilter(
    'DiskFilter',
    'GiB disk',
    (r) => r.flavor.diskGb,
    (h) => h.diskGb,
    freeDiskGb,
    settings,
  );
