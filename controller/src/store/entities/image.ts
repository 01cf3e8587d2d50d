import { defineEntity, p } from '@mikro-orm/core';
import { identity } from './common.ts';

export type OsType = 'linux' | 'windows';
/** How the stored bytes encode the disk: as they are, or compressed. */
export type DiskFormat = 'raw' | 'gzip' | 'zstd';
export type ImageVisibility = 'public' | 'project';
/** Glance's life cycle: registered, receiving bytes, deployable, or a failed upload. */
export type ImageStatus = 'queued' | 'saving' | 'active' | 'killed';

/**
 * A disk image in the controller's image store. The bytes live in a file
 * named after the id (images/image-store.ts); this row says what they are.
 * Names are unique per owner (a project, or the operators when null).
 */
export const ImageSchema = defineEntity({
  name: 'Image',
  tableName: 'image',
  properties: {
    ...identity,
    name: p.string(),
    projectId: p.uuid().nullable().index('image_project_id_idx'),
    osType: p.string().$type<OsType>(),
    diskFormat: p.string().$type<DiskFormat>(),
    /** Stored bytes; 0 until ACTIVE. */
    sizeBytes: p.bigint('number'),
    /** Bytes on a disk once decompressed; 0 until ACTIVE. */
    virtualSizeBytes: p.bigint('number'),
    /** SHA-256 (hex) of the stored bytes; empty until ACTIVE. */
    sha256: p.string(),
    visibility: p.string().$type<ImageVisibility>(),
    status: p.string().$type<ImageStatus>(),
    statusReason: p.text(),
  },
  uniques: [
    {
      name: 'image_owner_name_key',
      expression:
        'create unique index "image_owner_name_key" on "image" ((coalesce("project_id"::text, \'\')), "name")',
    },
  ],
});

export class Image extends ImageSchema.class {}
ImageSchema.setClass(Image);
