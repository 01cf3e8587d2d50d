import type {
  SelectDestinationsRequest,
  SelectDestinationsResponse,
} from '../../../build/gen/ingot/v1/scheduler.ts';
import type { Placement } from '../conductor/placement.ts';
import { InvalidArgumentError } from '../domain/errors.ts';
import { ADMIN_ONLY } from './auth.ts';
import type { Method } from './rpc.ts';
import { resolveSchedulingRequest } from './scheduling-request.ts';

const MAX_COUNT = 100;

/** SchedulerService: ask where instances would land, with the filter trace, claiming nothing. */
export function schedulerHandlers(placement: Placement): Record<string, Method<never, unknown>> {
  const selectDestinations: Method<SelectDestinationsRequest, SelectDestinationsResponse> = {
    access: ADMIN_ONLY,
    async handle(req, { em, caller }) {
      if (req.count < 0 || req.count > MAX_COUNT) {
        throw new InvalidArgumentError([
          { field: 'count', description: `must be from 0 (meaning 1) to ${MAX_COUNT}` },
        ]);
      }
      const resolved = await resolveSchedulingRequest(em, caller, req.request, 'request', {
        imageRequired: false,
      });
      const selection = await placement.select(resolved.placement, {
        explain: req.explain,
        limit: req.count || 1,
      });
      return {
        destinations: selection.ranked.map(({ host, weight }) => ({
          kind: host.kind,
          id: host.id,
          name: host.name,
          weight,
        })),
        candidates: selection.candidates,
        noValidHost: selection.noValidHost,
        trace: selection.trace,
      };
    },
  };
  return { SelectDestinations: selectDestinations as Method<never, unknown> };
}
