import type { HostState, RequestSpec } from '../host-state.ts';
import type { HostFilter } from './host-filter.ts';

const SCOPE = 'aggregate_instance_extra_specs:';

const wantedByRequest = new WeakMap<RequestSpec, [string, string][]>();

/**
 * Flavor extra specs this filter matches: scoped ones, and unscoped keys (no
 * `:`) as nova does. Worked out once per request, not once per host.
 */
function wantedSpecs(request: RequestSpec): [string, string][] {
  const known = wantedByRequest.get(request);
  if (known) return known;
  const out: [string, string][] = [];
  for (const [key, value] of Object.entries(request.flavor.extraSpecs)) {
    if (key.startsWith(SCOPE)) out.push([key.slice(SCOPE.length), value]);
    else if (!key.includes(':')) out.push([key, value]);
  }
  wantedByRequest.set(request, out);
  return out;
}

/** Values the host's aggregates give `key`; comma-separated metadata values are sets. */
function offered(host: HostState, key: string): Set<string> {
  const values = new Set<string>();
  for (const a of host.aggregates) {
    for (const v of a.metadata[key]?.split(',') ?? []) values.add(v.trim());
  }
  return values;
}

function firstMismatch(host: HostState, request: RequestSpec): string | undefined {
  const wanted = wantedSpecs(request);
  if (wanted.length === 0) return undefined;
  for (const [key, value] of wanted) {
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
