import { freeRamMb, type HostState, type RequestSpec, type SchedulerSettings } from './host-state.ts';

/**
 * Scores hosts that passed every filter; higher is better. Raw scores are
 * normalised to 0..1 across the candidates and multiplied by `multiplier`,
 * as nova's weighers are, so weighers of different units can be combined.
 */
export interface HostWeigher {
  readonly name: string;
  readonly multiplier: number;
  weigh(host: HostState, request: RequestSpec): number;
}

/**
 * Bare metal: the smallest node that fits wins, so big nodes stay free for
 * big flavors. Waste is the relative excess of CPUs, RAM and disk.
 */
export function leastWasteWeigher(): HostWeigher {
  return {
    name: 'LeastWasteWeigher',
    multiplier: 1,
    weigh(host, { flavor }) {
      if (host.kind !== 'node') return 0;
      const waste =
        (host.vcpus - flavor.vcpus) / host.vcpus +
        (host.ramMb - flavor.ramMb) / host.ramMb +
        (host.diskGb - flavor.diskGb) / host.diskGb;
      return -waste;
    },
  };
}

/** Hypervisor hosts by free RAM: spread (positive multiplier) or pack (negative). */
export function ramWeigher(settings: SchedulerSettings): HostWeigher {
  return {
    name: 'RamWeigher',
    multiplier: settings.ramWeigherMultiplier,
    weigh: (host) => (host.kind === 'host' ? freeRamMb(host, settings) : 0),
  };
}

export const WEIGHERS: Readonly<Record<string, (settings: SchedulerSettings) => HostWeigher>> = {
  LeastWasteWeigher: leastWasteWeigher,
  RamWeigher: ramWeigher,
};

export const DEFAULT_WEIGHERS = Object.keys(WEIGHERS);
