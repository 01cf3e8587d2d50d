import type { HostState, RequestSpec } from '../host-state.ts';
import { PROJECT_ID_KEY } from '../host-state.ts';
import type { HostFilter } from './host-filter.ts';

/** A host in an aggregate dedicated to another project is that project's alone. */
function dedicatedToOther(host: HostState, request: RequestSpec): string | undefined {
  for (const a of host.aggregates) {
    const owner = a.metadata[PROJECT_ID_KEY];
    if (owner && owner !== request.projectId) return a.name;
  }
  return undefined;
}

/**
 * The seed's PlacementFilter. `compute_type=bare_metal` → only bare-metal
 * nodes, no aggregate needed (they are isolated by nature). Otherwise only
 * hypervisor hosts of the project's dedicated aggregate, or of the default
 * aggregate when it has none. An isolated project never lands outside its
 * aggregate, and nobody else lands inside one.
 */
export function placementFilter(): HostFilter {
  return {
    name: 'PlacementFilter',
    passes(host, request) {
      if (dedicatedToOther(host, request)) return false;
      if (request.bareMetal) return host.kind === 'node';
      return host.kind === 'host' && host.aggregates.some((a) => request.homeAggregateIds.has(a.id));
    },
    why(host, request) {
      const other = dedicatedToOther(host, request);
      if (other) return `in aggregate ${other}, dedicated to another project`;
      if (request.bareMetal) return 'a hypervisor host; compute_type=bare_metal asks for a bare-metal node';
      if (request.homeAggregateIds.size === 0) {
        return `project ${request.projectName} is isolated but no aggregate is dedicated to it`;
      }
      if (host.kind === 'node') return 'a bare-metal node; only compute_type=bare_metal requests use one';
      return `not in project ${request.projectName}'s aggregate`;
    },
  };
}
