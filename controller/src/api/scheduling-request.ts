import type { EntityManager } from '@mikro-orm/sql';
import type { SchedulingRequest } from '../../../build/gen/ingot/v1/scheduler.ts';
import type { PlacementRequest } from '../conductor/placement.ts';
import { InvalidArgumentError, PermissionDeniedError } from '../domain/errors.ts';
import { stringMap, text } from '../domain/fields.ts';
import { isId } from '../domain/formats.ts';
import { Violations } from '../domain/violations.ts';
import { Flavor } from '../store/entities/flavor.ts';
import { Project } from '../store/entities/project.ts';
import { findByRef } from '../store/resource-repository.ts';
import type { Caller } from './auth.ts';

export interface ResolvedRequest {
  placement: PlacementRequest;
  project: Project;
  flavor: Flavor;
  image: string;
}

/**
 * The project a caller acts for: a member's own (naming another is refused),
 * or, for an admin, the one named (required).
 */
export async function resolveProject(
  em: EntityManager,
  caller: Caller,
  ref: string,
  field: string,
): Promise<Project> {
  if (caller.role === 'member') {
    const own = await findByRef(em, 'project', Project, caller.projectId ?? '');
    if (ref && ref !== own.id && ref !== own.name) {
      throw new PermissionDeniedError(`this token belongs to project ${own.name}; it cannot act for ${ref}`);
    }
    return own;
  }
  if (!ref.trim())
    throw new InvalidArgumentError([{ field, description: 'is required for admins (a project id or name)' }]);
  return findByRef(em, 'project', Project, ref);
}

/** Validates a SchedulingRequest and resolves its project and flavor. */
export async function resolveSchedulingRequest(
  em: EntityManager,
  caller: Caller,
  request: SchedulingRequest | undefined,
  prefix: string,
  opts: { imageRequired: boolean },
): Promise<ResolvedRequest> {
  const violations = new Violations();
  if (!request) violations.add(prefix, 'is required');
  violations.throwIfAny();
  const req = request as SchedulingRequest;
  if (!req.flavor.trim()) violations.add(`${prefix}.flavor`, 'is required (a flavor id or name)');
  const image = text(255)(req.image);
  if (typeof image !== 'string') violations.add(`${prefix}.image`, 'must be at most 255 characters');
  else if (opts.imageRequired && !image) violations.add(`${prefix}.image`, 'is required');
  const hints = stringMap(req.hints);
  if (typeof hints === 'object' && hints !== null && 'invalid' in hints)
    violations.add(`${prefix}.hints`, String(hints.invalid));
  const zone = text(255)(req.availabilityZone);
  if (typeof zone !== 'string')
    violations.add(`${prefix}.availability_zone`, 'must be at most 255 characters');
  violations.throwIfAny();
  const project = await resolveProject(em, caller, req.project, `${prefix}.project`);
  const flavor = await findByRef(em, 'flavor', Flavor, req.flavor);
  return {
    project,
    flavor,
    image: image as string,
    placement: {
      projectId: project.id,
      projectName: project.name,
      projectIsolated: project.isolated,
      flavor: {
        vcpus: flavor.vcpus,
        ramMb: flavor.ramMb,
        diskGb: flavor.diskGb,
        extraSpecs: flavor.extraSpecs,
      },
      hints: hints as Record<string, string>,
      availabilityZone: zone as string,
    },
  };
}

/**
 * Where to find an instance: by id (anywhere for admins), or by name within
 * the caller's project (an admin names the project).
 */
export async function instanceWhere(
  em: EntityManager,
  caller: Caller,
  ref: string,
  projectRef: string,
): Promise<Record<string, string>> {
  const trimmed = ref.trim();
  if (!trimmed)
    throw new InvalidArgumentError([{ field: 'id', description: 'is required (an instance id or name)' }]);
  if (caller.role === 'admin' && isId(trimmed) && !projectRef) return { id: trimmed };
  const project = await resolveProject(em, caller, projectRef, 'project');
  return isId(trimmed) ? { id: trimmed, projectId: project.id } : { name: trimmed, projectId: project.id };
}
