import type { EntityManager } from '@mikro-orm/sql';
import type { Empty } from '../../../build/gen/google/protobuf/empty.ts';
import * as pb from '../../../build/gen/ingot/v1/image.ts';
import { ImageNotActiveError } from '../domain/agent-errors.ts';
import { InvalidArgumentError } from '../domain/errors.ts';
import { imageFilePath } from '../http/image-routes.ts';
import { type ImageCaptures, RECEIVE_TTL_DEFAULT_MS, RECEIVE_TTL_MAX_MS } from '../images/image-captures.ts';
import type { ImageStore } from '../images/image-store.ts';
import { createImage, deleteImage, findImage, uploadImage, visibleWhere } from '../images/images.ts';
import type { UrlSigner } from '../images/url-signer.ts';
import type { Logger } from '../log/logger.ts';
import type { DiskFormat, Image, ImageStatus, ImageVisibility, OsType } from '../store/entities/image.ts';
import { Image as ImageEntity } from '../store/entities/image.ts';
import type { Database } from '../store/orm.ts';
import { listResources } from '../store/resource-repository.ts';
import { durationMs } from './agent-service.ts';
import type { Access } from './auth.ts';
import type { ClientStreamMethod, Handlers, Method } from './rpc.ts';

const MEMBERS_TOO: Access = ['admin', 'member'];
/** Download URLs last this long unless asked otherwise. @default 10 minutes */
const DEFAULT_URL_TTL_MS = 10 * 60_000;
const MAX_URL_TTL_MS = 7 * 24 * 3600_000;

export const OS_TYPES: Record<OsType, pb.OsType> = {
  linux: pb.OsType.OS_TYPE_LINUX,
  windows: pb.OsType.OS_TYPE_WINDOWS,
};
const FORMATS: Record<DiskFormat, pb.DiskFormat> = {
  raw: pb.DiskFormat.DISK_FORMAT_RAW,
  gzip: pb.DiskFormat.DISK_FORMAT_RAW_GZIP,
  zstd: pb.DiskFormat.DISK_FORMAT_RAW_ZSTD,
};
export const VISIBILITIES: Record<ImageVisibility, pb.ImageVisibility> = {
  public: pb.ImageVisibility.IMAGE_VISIBILITY_PUBLIC,
  project: pb.ImageVisibility.IMAGE_VISIBILITY_PROJECT,
};
const STATUSES: Record<ImageStatus, pb.ImageStatus> = {
  queued: pb.ImageStatus.IMAGE_STATUS_QUEUED,
  saving: pb.ImageStatus.IMAGE_STATUS_SAVING,
  active: pb.ImageStatus.IMAGE_STATUS_ACTIVE,
  killed: pb.ImageStatus.IMAGE_STATUS_KILLED,
};

/** The inverse of a mapping above; unset (0) gives undefined, an unknown value a violation. */
export function fromProto<K extends string>(
  map: Record<K, number>,
  value: number,
  field: string,
  violations: { field: string; description: string }[],
): K | undefined {
  if (value === 0) return undefined;
  const key = (Object.keys(map) as K[]).find((k) => map[k] === value);
  if (!key) violations.push({ field, description: `must be one of ${Object.keys(map).join(', ')}` });
  return key;
}

export function imageToProto(image: Image): pb.Image {
  return {
    id: image.id,
    name: image.name,
    projectId: image.projectId ?? '',
    osType: OS_TYPES[image.osType],
    diskFormat: FORMATS[image.diskFormat],
    sizeBytes: image.sizeBytes,
    virtualSizeBytes: image.virtualSizeBytes,
    sha256: image.sha256,
    visibility: VISIBILITIES[image.visibility],
    status: STATUSES[image.status],
    statusReason: image.statusReason,
    createTime: image.createdAt,
    updateTime: image.updatedAt,
  };
}

export interface ImageServiceDeps {
  db: Database;
  store: ImageStore;
  signer: UrlSigner;
  log: Logger;
  /** This controller's HTTP base URL as a client that dialled `authority` reaches it. */
  httpBase: (authority: string) => string;
  captures: ImageCaptures;
}

/**
 * ImageService: register, upload, list, delete images, hand out signed download URLs, and open
 * capture ports that receive an image over plain TCP.
 */
export function imageHandlers(deps: ImageServiceDeps): Handlers {
  const one = async (_em: EntityManager, image: Image) => imageToProto(image);
  const create: Method<pb.CreateImageRequest, pb.Image> = {
    access: MEMBERS_TOO,
    async handle(req, { em, caller }) {
      const violations: { field: string; description: string }[] = [];
      if (!req.image) violations.push({ field: 'image', description: 'is required' });
      const given = req.image ?? pb.Image.fromPartial({});
      const osType = fromProto(OS_TYPES, given.osType, 'image.os_type', violations);
      const diskFormat = fromProto(FORMATS, given.diskFormat, 'image.disk_format', violations);
      const visibility = fromProto(VISIBILITIES, given.visibility, 'image.visibility', violations);
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      const image = await createImage(em, caller, {
        name: given.name,
        ...(osType ? { osType } : {}),
        ...(diskFormat ? { diskFormat } : {}),
        ...(visibility ? { visibility } : {}),
        project: req.project,
      });
      return one(em, image);
    },
  };
  const upload: ClientStreamMethod<pb.UploadImageRequest, pb.Image> = {
    access: MEMBERS_TOO,
    stream: 'client',
    async handle(requests, { caller, signal }) {
      const it = requests[Symbol.asyncIterator]();
      const first = await it.next();
      const header = first.done ? undefined : first.value.header;
      if (!header) {
        throw new InvalidArgumentError([
          { field: 'header', description: 'the first message of UploadImage must be the header' },
        ]);
      }
      async function* data(): AsyncGenerator<Buffer> {
        for (;;) {
          const next = await it.next();
          if (next.done) return;
          if (next.value.header) {
            throw new InvalidArgumentError([
              { field: 'header', description: 'only the first message may be a header' },
            ]);
          }
          if (next.value.data) yield next.value.data;
        }
      }
      const image = await uploadImage(deps, caller, header.id, data(), {
        ...(header.expectedSha256 ? { expectedSha256: header.expectedSha256 } : {}),
        signal,
      });
      return imageToProto(image);
    },
  };
  const get: Method<pb.GetImageRequest, pb.Image> = {
    access: MEMBERS_TOO,
    handle: async (req, { em, caller }) => one(em, await findImage(em, caller, req.id)),
  };
  const list: Method<pb.ListImagesRequest, pb.ListImagesResponse> = {
    access: MEMBERS_TOO,
    async handle(req, { em, caller }) {
      const listing = await listResources(em, ImageEntity, req, visibleWhere(caller));
      return { images: listing.rows.map(imageToProto), nextPageToken: listing.nextPageToken };
    },
  };
  const remove: Method<pb.DeleteImageRequest, Empty> = {
    access: MEMBERS_TOO,
    async handle(req, { em, caller }) {
      await deleteImage(em, deps.store, caller, req.id, (id) =>
        deps.captures.abandon(id, 'the image was deleted during the capture'),
      );
      return {};
    },
  };
  const url: Method<pb.CreateImageUrlRequest, pb.CreateImageUrlResponse> = {
    access: MEMBERS_TOO,
    async handle(req, { em, caller, authority }) {
      const ttlMs = durationMs(req.ttl, 'ttl', DEFAULT_URL_TTL_MS, MAX_URL_TTL_MS);
      const image = await findImage(em, caller, req.id);
      if (image.status !== 'active') throw new ImageNotActiveError(image.name, image.status);
      const expireTime = new Date(Date.now() + ttlMs);
      const { expires, sig } = deps.signer.sign(image.id, expireTime);
      return {
        url: `${deps.httpBase(authority)}${imageFilePath(image.id)}?expires=${expires}&sig=${sig}`,
        expireTime: new Date(expires * 1000),
      };
    },
  };
  const receive: Method<pb.ReceiveImageRequest, pb.ReceiveImageResponse> = {
    access: MEMBERS_TOO,
    async handle(req, { caller }) {
      const ttlMs = durationMs(req.ttl, 'ttl', RECEIVE_TTL_DEFAULT_MS, RECEIVE_TTL_MAX_MS);
      const opened = await deps.captures.receive(caller, req.id, {
        ...(req.expectedSizeBytes ? { expectedSizeBytes: req.expectedSizeBytes } : {}),
        ...(req.expectedSha256 ? { expectedSha256: req.expectedSha256 } : {}),
        ttlMs,
      });
      return { ...opened, image: imageToProto(opened.image) };
    },
  };
  return {
    CreateImage: create,
    UploadImage: upload,
    GetImage: get,
    ListImages: list,
    DeleteImage: remove,
    CreateImageUrl: url,
    ReceiveImage: receive,
  } as Handlers;
}
