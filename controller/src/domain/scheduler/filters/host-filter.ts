import type { HostState, RequestSpec, SchedulerSettings } from '../host-state.ts';

/**
 * One scheduling rule. `passes` is the hot path (called for every host on
 * every request); `why` explains a rejection and runs only for traces.
 */
export interface HostFilter {
  readonly name: string;
  passes(host: HostState, request: RequestSpec): boolean;
  why(host: HostState, request: RequestSpec): string;
}

export type FilterFactory = (settings: SchedulerSettings) => HostFilter;
