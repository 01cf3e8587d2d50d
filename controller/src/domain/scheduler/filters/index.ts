import { aggregateInstanceExtraSpecsFilter } from './aggregate-extra-specs-filter.ts';
import { availabilityZoneFilter } from './availability-zone-filter.ts';
import type { FilterFactory } from './host-filter.ts';
import { nodeStateFilter } from './node-state-filter.ts';
import { placementFilter } from './placement-filter.ts';
import { diskFilter, ramFilter, vcpuFilter } from './resource-filters.ts';

/** Every filter an operator can name in `scheduler.filters`. */
export const FILTERS: Readonly<Record<string, FilterFactory>> = {
  PlacementFilter: placementFilter,
  VcpuFilter: vcpuFilter,
  RamFilter: ramFilter,
  DiskFilter: diskFilter,
  AggregateInstanceExtraSpecsFilter: aggregateInstanceExtraSpecsFilter,
  AvailabilityZoneFilter: availabilityZoneFilter,
  NodeStateFilter: nodeStateFilter,
};

/** @default the order of the seed's scheduler: placement, resources, extra specs, zone, node state */
export const DEFAULT_FILTERS = Object.keys(FILTERS);
