import { UniqueConstraintViolationException } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/sql';
import type { Caller } from '../api/auth.ts';
import {
  AmbiguousImageError,
  ImageDataRejectedError,
  ImageInUseError,
  ImageNotUploadableError,
} from '../domain/agent-errors.ts';
import {
  AlreadyExistsError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
} from '../domain/errors.ts';
import { isId, isName, NAME_HINT } from '../domain/formats.ts';
import { isFinished, TASK_STATES } from '../domain/tasks.ts';
import { Violations } from '../domain/violations.ts';
import type { Logger } from '../log/logger.ts';
import type { DiskFormat, ImageVisibility, OsType } from '../store/entities/image.ts';
import { Image } from '../store/entities/image.ts';
import { Project } from '../store/entities/project.ts';
import { Task } from '../store/entities/task.ts';
import type { Database } from '../store/orm.ts';
import { findByRef } from '../store/resource-repository.ts';
import { ImageDataError, type ImageStore } from './image-store.ts';

function invalid(field: string, description: string): InvalidArgumentError {
  return new InvalidArgumentError([{ field, description }]);
}

/** Which images a caller sees: admins all, members their project's and the public ones. */
export function visibleWhere(caller: Caller): Record<string, unknown> {
  if (caller.role === 'admin') return {};
  return { $or: [{ projectId: caller.projectId ?? null }, { visibility: 'public' }] };
}

function canWrite(caller: Caller, image: Image): boolean {
  return caller.role === 'admin' || (image.projectId !== null && image.projectId === caller.projectId);
}

/**
 * Finds an image the caller may see, by id or by name. A name is looked up
 * among the caller's own images first (the project's for members, the
 * operators' for admins), then among all visible ones, where it must be
 * unique. `write` also requires that the caller may change it.
 */
export async function findImage(
  em: EntityManager,
  caller: Caller,
  ref: string,
  opts: { write?: boolean; field?: string } = {},
): Promise<Image> {
  const trimmed = ref.trim();
  if (!trimmed) throw invalid(opts.field ?? 'id', 'is required (an image id or name)');
  let image: Image | null;
  const visible = visibleWhere(caller);
  if (isId(trimmed)) {
    image = await em.findOne(Image, { $and: [{ id: trimmed.toLowerCase() }, visible] } as never);
  } else {
    const own = caller.role === 'admin' ? null : (caller.projectId ?? null);
    image = await em.findOne(Image, { name: trimmed, projectId: own });
    if (!image) {
      const named = await em.find(Image, { $and: [{ name: trimmed }, visible] } as never, { limit: 2 });
      if (named.length > 1) throw new AmbiguousImageError(trimmed);
      image = named[0] ?? null;
    }
  }
  if (!image) throw new NotFoundError('image', trimmed);
  if (opts.write && !canWrite(caller, image)) {
    throw new PermissionDeniedError(
      `image ${image.name} is public and owned by another project or the operators`,
    );
  }
  return image;
}

export interface NewImage {
  name: string;
  osType?: OsType;
  diskFormat?: DiskFormat;
  visibility?: ImageVisibility;
  /** Admins: owning project (id or name), empty for an operators' image. */
  project?: string;
}

/** Registers an image in QUEUED; its bytes come with an upload. */
export async function createImage(em: EntityManager, caller: Caller, input: NewImage): Promise<Image> {
  const violations = new Violations();
  const name = input.name.trim();
  if (!isName(name)) violations.add('image.name', NAME_HINT);
  violations.throwIfAny();
  let projectId: string | null = null;
  if (caller.role === 'member') {
    const own = await findByRef(em, 'project', Project, caller.projectId ?? '');
    if (input.project && input.project !== own.id && input.project !== own.name) {
      throw new PermissionDeniedError(
        `this token belongs to project ${own.name}; it cannot act for ${input.project}`,
      );
    }
    projectId = own.id;
  } else if (input.project?.trim()) {
    projectId = (await findByRef(em, 'project', Project, input.project)).id;
  }
  const visibility = input.visibility ?? (caller.role === 'admin' ? 'public' : 'project');
  if (visibility === 'public' && caller.role !== 'admin') {
    throw new PermissionDeniedError('only admins can make an image public');
  }
  if (visibility === 'project' && projectId === null) {
    throw invalid('image.visibility', 'an operators’ image (no project) must be public');
  }
  const image = em.create(Image, {
    name,
    projectId,
    osType: input.osType ?? 'linux',
    diskFormat: input.diskFormat ?? 'raw',
    sizeBytes: 0,
    virtualSizeBytes: 0,
    sha256: '',
    visibility,
    status: 'queued',
    statusReason: '',
  });
  try {
    await em.flush();
  } catch (err) {
    if (err instanceof UniqueConstraintViolationException)
      throw new AlreadyExistsError('image', 'name', name);
    throw err;
  }
  return image;
}

/**
 * Receives an image's bytes (gRPC UploadImage or HTTP PUT): QUEUED or KILLED
 * → SAVING (a conditional update, so two uploads never interleave), then
 * ACTIVE with size, virtual size and digest, or KILLED with the reason.
 */
export async function uploadImage(
  deps: { db: Database; store: ImageStore; log: Logger },
  caller: Caller,
  ref: string,
  source: AsyncIterable<Buffer>,
  opts: { expectedSha256?: string; signal?: AbortSignal } = {},
): Promise<Image> {
  const em = deps.db.fork();
  const image = await findImage(em, caller, ref, { write: true });
  if (opts.expectedSha256 && !/^[0-9a-fA-F]{64}$/.test(opts.expectedSha256)) {
    throw invalid('header.expected_sha256', 'must be 64 hex digits');
  }
  const claimed = await em.nativeUpdate(
    Image,
    { id: image.id, status: { $in: ['queued', 'killed'] } },
    { status: 'saving', statusReason: '', updatedAt: new Date() },
  );
  if (claimed === 0) throw new ImageNotUploadableError(image.name, image.status);
  const log = deps.log.child({ image: image.id });
  log.info({ name: image.name, format: image.diskFormat }, 'image upload started');
  try {
    const received = await deps.store.receive(image.id, image.diskFormat, source, opts);
    await em.nativeUpdate(
      Image,
      { id: image.id },
      { status: 'active', ...received, statusReason: '', updatedAt: new Date() },
    );
    log.info(received, 'image uploaded');
  } catch (err) {
    const reason =
      err instanceof ImageDataError
        ? err.message
        : opts.signal?.aborted
          ? 'the upload was cancelled'
          : 'the upload failed';
    await em.nativeUpdate(
      Image,
      { id: image.id },
      { status: 'killed', statusReason: reason, updatedAt: new Date() },
    );
    log.warn({ err, reason }, 'image upload failed');
    if (err instanceof ImageDataError) throw new ImageDataRejectedError(image.name, err.reason, err.message);
    throw err;
  }
  return em.fork().findOneOrFail(Image, { id: image.id });
}

/**
 * Deletes the row and the file; refused while an unfinished task deploys or
 * captures the image. `abandon` first stops a receiver still filling it.
 */
export async function deleteImage(
  em: EntityManager,
  store: ImageStore,
  caller: Caller,
  ref: string,
  abandon: (imageId: string) => Promise<void>,
): Promise<void> {
  const image = await findImage(em, caller, ref, { write: true });
  const unfinished = TASK_STATES.filter((s) => !isFinished(s));
  const task = await em.findOne(Task, { imageId: image.id, state: { $in: unfinished } });
  if (task) throw new ImageInUseError(image.name, task.id);
  await abandon(image.id);
  await em.nativeDelete(Image, { id: image.id });
  await store.remove(image.id);
}
