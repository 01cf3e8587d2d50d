import type { HostFilter } from './host-filter.ts';

/**
 * Bare-metal nodes must be available, hold no instance and not be in
 * maintenance; hypervisor hosts always pass.
 */
export function nodeStateFilter(): HostFilter {
  return {
    name: 'NodeStateFilter',
    passes: (host) =>
      host.kind === 'host' || (host.provisionState === 'available' && !host.instanceId && !host.maintenance),
    why: (host) => {
      if (host.maintenance) return 'in maintenance';
      if (host.instanceId) return `already claimed by instance ${host.instanceId}`;
      return `${host.provisionState}, not available`;
    },
  };
}
