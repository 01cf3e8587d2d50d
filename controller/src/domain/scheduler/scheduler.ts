import type { HostFilter } from './filters/host-filter.ts';
import { FILTERS } from './filters/index.ts';
import type { HostState, RequestSpec, SchedulerSettings } from './host-state.ts';
import { type Selection, type SelectOptions, selectHosts } from './pipeline.ts';
import { type HostWeigher, WEIGHERS } from './weighers.ts';

/** Settings plus the filters and weighers, by name, in the order they run. */
export interface SchedulerConfig extends SchedulerSettings {
  filters: readonly string[];
  weighers: readonly string[];
}

/** The filters and weighers an operator configured, by name, in order. */
export class Scheduler {
  readonly settings: SchedulerConfig;
  readonly filters: readonly HostFilter[];
  readonly weighers: readonly HostWeigher[];

  /** Throws on an unknown filter or weigher name; config validation calls this at start. */
  constructor(settings: SchedulerConfig) {
    this.settings = settings;
    this.filters = settings.filters.map((name) => {
      const factory = FILTERS[name];
      if (!factory)
        throw new Error(`unknown scheduler filter ${name}; known: ${Object.keys(FILTERS).join(', ')}`);
      return factory(settings);
    });
    this.weighers = settings.weighers.map((name) => {
      const factory = WEIGHERS[name];
      if (!factory)
        throw new Error(`unknown scheduler weigher ${name}; known: ${Object.keys(WEIGHERS).join(', ')}`);
      return factory(settings);
    });
  }

  select(hosts: readonly HostState[], request: RequestSpec, opts: SelectOptions): Selection {
    return selectHosts(hosts, request, this.filters, this.weighers, opts);
  }
}
