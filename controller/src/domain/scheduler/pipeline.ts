import type { HostFilter } from './filters/host-filter.ts';
import type { HostState, RequestSpec } from './host-state.ts';
import type { HostWeigher } from './weighers.ts';

export interface WeighedHost {
  host: HostState;
  weight: number;
}

export interface Rejection {
  host: string;
  reason: string;
}

export interface FilterStep {
  filter: string;
  hostsIn: number;
  hostsOut: number;
  /** Up to REJECTIONS_SHOWN of them. */
  rejected: Rejection[];
}

export interface Selection {
  /** Every host that passed, best first. */
  ranked: WeighedHost[];
  /** Empty when a host was found; otherwise names the emptying filter and the closest misses. */
  noValidHost: string;
  /** Only when asked to explain. */
  trace: FilterStep[];
}

const REJECTIONS_SHOWN = 10;
const CLOSEST_SHOWN = 3;

/**
 * Runs the filters in order, then the weighers, over the given hosts. Pure:
 * the same hosts and request always give the same answer (ties go by name).
 */
export function selectHosts(
  hosts: readonly HostState[],
  request: RequestSpec,
  filters: readonly HostFilter[],
  weighers: readonly HostWeigher[],
  opts: { explain: boolean },
): Selection {
  const trace: FilterStep[] = [];
  let remaining: readonly HostState[] = hosts;
  for (const filter of filters) {
    const kept: HostState[] = [];
    const rejected: HostState[] = [];
    for (const host of remaining) {
      if (filter.passes(host, request)) kept.push(host);
      else if (opts.explain || rejected.length < REJECTIONS_SHOWN) rejected.push(host);
    }
    if (opts.explain) {
      trace.push({
        filter: filter.name,
        hostsIn: remaining.length,
        hostsOut: kept.length,
        rejected: rejected
          .slice(0, REJECTIONS_SHOWN)
          .map((h) => ({ host: h.name, reason: filter.why(h, request) })),
      });
    }
    if (kept.length === 0) {
      return { ranked: [], noValidHost: describeEmpty(filter, remaining, rejected, request), trace };
    }
    remaining = kept;
  }
  return { ranked: weigh(remaining, request, weighers), noValidHost: '', trace };
}

function describeEmpty(
  filter: HostFilter,
  before: readonly HostState[],
  rejected: HostState[],
  request: RequestSpec,
): string {
  if (before.length === 0) return 'no valid host: the inventory has no hosts';
  const closest = rejected
    .slice(0, CLOSEST_SHOWN)
    .map((h) => `${h.name} (${filter.why(h, request)})`)
    .join('; ');
  return `no valid host: ${filter.name} rejected the last ${before.length} host(s); closest: ${closest}`;
}

function weigh(
  hosts: readonly HostState[],
  request: RequestSpec,
  weighers: readonly HostWeigher[],
): WeighedHost[] {
  const totals = new Float64Array(hosts.length);
  for (const weigher of weighers) {
    if (weigher.multiplier === 0) continue;
    const raw = hosts.map((h) => weigher.weigh(h, request));
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    for (const r of raw) {
      if (r < min) min = r;
      if (r > max) max = r;
    }
    const span = max - min;
    if (span === 0) continue;
    for (let i = 0; i < raw.length; i++)
      totals[i] = (totals[i] ?? 0) + (((raw[i] ?? 0) - min) / span) * weigher.multiplier;
  }
  return hosts
    .map((host, i) => ({ host, weight: totals[i] ?? 0 }))
    .sort(
      (a, b) => b.weight - a.weight || (a.host.name < b.host.name ? -1 : a.host.name > b.host.name ? 1 : 0),
    );
}
