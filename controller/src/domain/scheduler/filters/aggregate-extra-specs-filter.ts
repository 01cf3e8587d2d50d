import type { HostState, RequestSpec } from '../host-state.ts';
import type { HostFilter } from './host-filter.ts';

/** Values the host's aggregates give `key`; comma-separated metadata values are sets. */
function offered(host: HostState, key: string): Set<string> {
  const values = new Set<string>();
  for (const a of host.aggregates) {
    for (const v of a.metadata[key]?.split(',') ?? []) values.add(v.trim());
  }
  return values;
}

function firstMismatch(host: HostState, request: RequestSpec): string | undefined {
  for (const [key, value] of request.aggregateSpecs) {
    if (!offered(host, key).has(value)) return `${key}=${value}`;
  }
  return undefined;
}

/** The host's aggregates must carry every extra spec of the flavor as metadata. */
export function aggregateInstanceExtraSpecsFilter(): HostFilter {
  return {
    name: 'AggregateInstanceExtraSpecsFilter',
    passes: (host, request) => firstMismatch(host, request) === undefined,
    why: (host, request) => `no aggregate of this host has ${firstMismatch(host, request)}`,
  };
}
