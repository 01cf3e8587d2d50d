import type { HostState, SchedulerSettings } from '../host-state.ts';
import type { HostFilter } from './host-filter.ts';

/** A host is in the zones of its aggregates, or in the default zone when none has one. */
function zones(host: HostState, settings: SchedulerSettings): string[] {
  const named = host.aggregates.map((a) => a.availabilityZone).filter(Boolean);
  return named.length > 0 ? named : [settings.defaultAvailabilityZone];
}

export function availabilityZoneFilter(settings: SchedulerSettings): HostFilter {
  return {
    name: 'AvailabilityZoneFilter',
    passes: (host, request) =>
      !request.availabilityZone || zones(host, settings).includes(request.availabilityZone),
    why: (host, request) => `in zone ${zones(host, settings).join(', ')}, not ${request.availabilityZone}`,
  };
}
