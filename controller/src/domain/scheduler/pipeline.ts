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
  /** The best hosts that passed, best first: all of them, or the first `limit`. */
  ranked: WeighedHost[];
  /** How many hosts passed every filter. */
  candidates: number;
  /** Empty when a host was found; otherwise names the emptying filter and the closest misses. */
  noValidHost: string;
  /** Only when asked to explain. */
  trace: FilterStep[];
}

export interface SelectOptions {
  explain: boolean;
  /** Rank only this many of the best hosts (callers never use more). @default all */
  limit?: number;
}

const REJECTIONS_SHOWN = 10;
const CLOSEST_SHOWN = 3;

/**
 * Runs the filters in order, then the weighers, over the given hosts. Pure:
 * the same hosts and request always give the same answer (ties go by name).
 * One pass: each host goes through the filters until one rejects it, so ten
 * thousand hosts cost no intermediate lists.
 */
export function selectHosts(
  hosts: readonly HostState[],
  request: RequestSpec,
  filters: readonly HostFilter[],
  weighers: readonly HostWeigher[],
  opts: SelectOptions,
): Selection {
  const count = filters.length;
  const rejectedBy = new Int32Array(count);
  const samples: HostState[][] = filters.map(() => []);
  const kept: HostState[] = [];
  for (let h = 0; h < hosts.length; h++) {
    const host = hosts[h] as HostState;
    let f = 0;
    while (f < count && (filters[f] as HostFilter).passes(host, request)) f++;
    if (f === count) {
      kept.push(host);
      continue;
    }
    rejectedBy[f] = (rejectedBy[f] as number) + 1;
    const sample = samples[f] as HostState[];
    if (sample.length < REJECTIONS_SHOWN) sample.push(host);
  }

  const trace: FilterStep[] = [];
  let hostsIn = hosts.length;
  for (let f = 0; f < filters.length; f++) {
    const filter = filters[f] as HostFilter;
    const hostsOut = hostsIn - (rejectedBy[f] ?? 0);
    const sample = samples[f] as HostState[];
    if (opts.explain) {
      trace.push({
        filter: filter.name,
        hostsIn,
        hostsOut,
        rejected: sample.map((h) => ({ host: h.name, reason: filter.why(h, request) })),
      });
    }
    if (hostsOut === 0) {
      return {
        ranked: [],
        candidates: 0,
        noValidHost: describeEmpty(filter, hostsIn, sample, request),
        trace,
      };
    }
    hostsIn = hostsOut;
  }
  return {
    ranked: weigh(kept, request, weighers, opts.limit ?? kept.length),
    candidates: kept.length,
    noValidHost: '',
    trace,
  };
}

function describeEmpty(
  filter: HostFilter,
  hostsIn: number,
  rejected: HostState[],
  request: RequestSpec,
): string {
  if (hostsIn === 0) return 'no valid host: the inventory has no hosts';
  const closest = rejected
    .slice(0, CLOSEST_SHOWN)
    .map((h) => `${h.name} (${filter.why(h, request)})`)
    .join('; ');
  return `no valid host: ${filter.name} rejected the last ${hostsIn} host(s); closest: ${closest}`;
}

/** Best first: higher weight, then name. */
function better(a: WeighedHost, b: WeighedHost): boolean {
  return a.weight > b.weight || (a.weight === b.weight && a.host.name < b.host.name);
}

function weigh(
  hosts: readonly HostState[],
  request: RequestSpec,
  weighers: readonly HostWeigher[],
  limit: number,
): WeighedHost[] {
  const totals = new Float64Array(hosts.length);
  const raw = new Float64Array(hosts.length);
  for (const weigher of weighers) {
    if (weigher.multiplier === 0) continue;
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < hosts.length; i++) {
      const r = weigher.weigh(hosts[i] as HostState, request);
      raw[i] = r;
      if (r < min) min = r;
      if (r > max) max = r;
    }
    const span = max - min;
    if (span === 0) continue;
    for (let i = 0; i < hosts.length; i++) {
      totals[i] = (totals[i] ?? 0) + (((raw[i] ?? 0) - min) / span) * weigher.multiplier;
    }
  }
  if (limit * 8 >= hosts.length) {
    const all = hosts.map((host, i) => ({ host, weight: totals[i] ?? 0 }));
    return all.sort((a, b) => (better(a, b) ? -1 : better(b, a) ? 1 : 0)).slice(0, limit);
  }
  // Keep only the best `limit`, in order: insertion into a short sorted list
  // beats sorting ten thousand candidates when callers want a hundred.
  const best: WeighedHost[] = [];
  for (let i = 0; i < hosts.length; i++) {
    const weight = totals[i] as number;
    const worst = best[limit - 1];
    // Most candidates lose to the current worst on weight alone: no allocation, no name compare.
    if (worst && weight < worst.weight) continue;
    const candidate = { host: hosts[i] as HostState, weight };
    if (worst && !better(candidate, worst)) continue;
    let at = best.length;
    while (at > 0 && better(candidate, best[at - 1] as WeighedHost)) at--;
    best.splice(at, 0, candidate);
    if (best.length > limit) best.pop();
  }
  return best;
}
