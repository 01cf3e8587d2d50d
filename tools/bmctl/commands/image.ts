import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { type ClientWritableStream, status } from '@grpc/grpc-js';
import { type Command, Option } from 'commander';
import {
  DiskFormat,
  diskFormatToJSON,
  type Image,
  type ImageStatus,
  ImageVisibility,
  imageStatusToJSON,
  imageVisibilityToJSON,
  OsType,
  osTypeToJSON,
  type ReceiveImageResponse,
  type UploadImageRequest,
} from '../../../build/gen/ingot/v1/image.ts';
import { listAll } from '../connection.ts';
import type { CommandContext } from '../context.ts';
import { BmctlError, isServiceError, UsageError } from '../errors.ts';
import { formatTime, toProtoJson, type View } from '../output.ts';
import { describeProgress, LiveLines, renderBar } from '../progress.ts';
import { parseListen, receiveOne } from '../receiver.ts';
import { AgentServices, formatBytes, parseDuration } from '../services.ts';
import { registerCaptureCommands } from './capture.ts';

const FORMATS = {
  raw: DiskFormat.DISK_FORMAT_RAW,
  gzip: DiskFormat.DISK_FORMAT_RAW_GZIP,
  zstd: DiskFormat.DISK_FORMAT_RAW_ZSTD,
};
const OS_TYPES = { linux: OsType.OS_TYPE_LINUX, windows: OsType.OS_TYPE_WINDOWS };
/** Bytes per UploadImage message. @default 1 MiB (gRPC's default limit is 4 MiB) */
const UPLOAD_CHUNK_BYTES = 1 << 20;

const formatName = (f: DiskFormat) =>
  (Object.entries(FORMATS).find(([, v]) => v === f)?.[0] ?? diskFormatToJSON(f)) as string;
const osName = (o: OsType) =>
  (Object.entries(OS_TYPES).find(([, v]) => v === o)?.[0] ?? osTypeToJSON(o)) as string;
const statusName = (s: ImageStatus) => imageStatusToJSON(s).replace('IMAGE_STATUS_', '').toLowerCase();
const visibilityName = (v: ImageVisibility) =>
  imageVisibilityToJSON(v).replace('IMAGE_VISIBILITY_', '').toLowerCase();

export const imageView: View<Image> = {
  columns: [
    { header: 'NAME', value: (i) => i.name },
    { header: 'STATUS', value: (i) => statusName(i.status) },
    { header: 'FORMAT', value: (i) => formatName(i.diskFormat) },
    { header: 'OS', value: (i) => osName(i.osType) },
    { header: 'SIZE', value: (i) => (i.sizeBytes ? formatBytes(i.sizeBytes) : '') },
    { header: 'VIRTUAL_SIZE', value: (i) => (i.virtualSizeBytes ? formatBytes(i.virtualSizeBytes) : '') },
    { header: 'VISIBILITY', value: (i) => visibilityName(i.visibility) },
  ],
  fields: (i) => [
    ['id', i.id],
    ['name', i.name],
    ['status', statusName(i.status)],
    ['status_reason', i.statusReason],
    ['disk_format', formatName(i.diskFormat)],
    ['os_type', osName(i.osType)],
    ['size_bytes', String(i.sizeBytes)],
    ['virtual_size_bytes', String(i.virtualSizeBytes)],
    ['sha256', i.sha256],
    ['visibility', visibilityName(i.visibility)],
    ['project_id', i.projectId],
    ['create_time', formatTime(i.createTime)],
    ['update_time', formatTime(i.updateTime)],
  ],
  json: (i) =>
    toProtoJson(i, {
      enums: {
        status: (v) => imageStatusToJSON(v as ImageStatus),
        diskFormat: (v) => diskFormatToJSON(v as DiskFormat),
        osType: (v) => osTypeToJSON(v as OsType),
        visibility: (v) => imageVisibilityToJSON(v as ImageVisibility),
      },
    }),
};

/** The format a file name suggests: `.gz` gzip, `.zst` zstd, anything else raw. */
export function formatOfFile(path: string): keyof typeof FORMATS {
  if (/\.gz$/i.test(path)) return 'gzip';
  if (/\.zst$/i.test(path)) return 'zstd';
  return 'raw';
}

export interface ImageCreateOptions {
  file: string;
  os: keyof typeof OS_TYPES;
  format?: keyof typeof FORMATS;
  project?: string;
  public?: boolean;
  private?: boolean;
  sha256?: string;
}

/**
 * Draws `[####......]  41%  112.0 MiB / 270.2 MiB  95.3 MiB/s` on a terminal,
 * at most ten times a second; writes nothing elsewhere.
 */
export class ProgressBar {
  readonly #write: (text: string) => void;
  readonly #tty: boolean;
  readonly #total: number;
  readonly #started = Date.now();
  #drawn = 0;

  constructor(progress: CommandContext['progress'], total: number) {
    this.#write = progress.write;
    this.#tty = progress.tty;
    this.#total = total;
  }

  update(done: number, force = false): void {
    const now = Date.now();
    if (!this.#tty || (!force && now - this.#drawn < 100)) return;
    this.#drawn = now;
    const fraction = this.#total > 0 ? Math.min(1, done / this.#total) : 0;
    const rate = done / Math.max(0.001, (now - this.#started) / 1000);
    this.#write(
      `\r${renderBar(fraction, 30)} ${String(Math.round(fraction * 100)).padStart(3)}%  ` +
        `${formatBytes(done)} / ${formatBytes(this.#total)}  ${formatBytes(rate)}/s `,
    );
  }

  finish(): void {
    if (this.#tty) this.#write('\n');
  }
}

/** Streams a file into UploadImage with flow control; resolves with the stored image. */
async function upload(
  services: AgentServices,
  image: Image,
  path: string,
  opts: { sha256?: string; bar: ProgressBar },
): Promise<Image> {
  let call: ClientWritableStream<UploadImageRequest> | undefined;
  const stored = new Promise<Image>((resolvePromise, reject) => {
    call = services.images.uploadImage(services.metadata(), (err, response) =>
      err ? reject(err) : resolvePromise(response as Image),
    );
  });
  const stream = call as unknown as ClientWritableStream<UploadImageRequest>;
  // A refusal mid-upload arrives through the callback; the writes after it just fail.
  stream.on('error', () => {});
  stream.write({ header: { id: image.id, expectedSha256: opts.sha256 ?? '' } });
  let sent = 0;
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: UPLOAD_CHUNK_BYTES })) {
      if (!stream.write({ data: chunk as Buffer })) {
        await Promise.race([new Promise((r) => stream.once('drain', r)), stored.then(() => undefined)]);
      }
      sent += (chunk as Buffer).length;
      opts.bar.update(sent);
    }
  } catch (err) {
    stream.cancel();
    throw new BmctlError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  stream.end();
  const result = await stored;
  opts.bar.update(sent, true);
  return result;
}

/** A capture's image: the existing one (the controller checks it is QUEUED or KILLED), or a new one with that name. */
export async function ensureImage(
  services: AgentServices,
  name: string,
  os: keyof typeof OS_TYPES | undefined,
): Promise<void> {
  try {
    await services.call(services.images, 'getImage', { id: name });
  } catch (err) {
    if (!isServiceError(err) || err.code !== status.NOT_FOUND) throw err;
    await services.call(services.images, 'createImage', {
      image: { name, osType: OS_TYPES[os ?? 'linux'] },
    });
  }
}

export function registerImageCommands(program: Command, ctx: CommandContext): void {
  const noun = program.command('image').description('Disk images nodes are deployed from');
  registerCaptureCommands(noun, program, ctx);

  const withServices = async <T>(work: (services: AgentServices) => Promise<T>): Promise<T> => {
    const services = new AgentServices(await ctx.connection());
    try {
      return await work(services);
    } finally {
      services.close();
    }
  };

  noun
    .command('create')
    .description('Register an image and upload its file in one go (a progress bar on a terminal)')
    .argument('<name>', 'unique name within the project (or among operators’ images)')
    .requiredOption('--file <path>', 'the image file: a raw disk, or one compressed with gzip or zstd')
    .addOption(new Option('--os <type>', 'operating system').choices(Object.keys(OS_TYPES)).default('linux'))
    .addOption(
      new Option(
        '--format <format>',
        'how the file is encoded (default: from its name, .gz/.zst, else raw)',
      ).choices(Object.keys(FORMATS)),
    )
    .option('--project <project>', 'admins: the owning project (default: an operators’ image)')
    .option('--public', 'visible to every project (admins only; the default for operators’ images)')
    .option('--private', 'visible to the owning project only (the default for members)')
    .option('--sha256 <hex>', 'refuse the upload unless the file hashes to this')
    .action(async (name: string, opts: ImageCreateOptions) => {
      if (opts.public && opts.private) throw new UsageError('--public and --private exclude each other');
      const path = resolve(ctx.secrets.cwd, opts.file);
      const size = await stat(path).then(
        (s) => s.size,
        (err: Error) => {
          throw new BmctlError(`cannot read ${opts.file}: ${err.message}`);
        },
      );
      const format = opts.format ?? formatOfFile(path);
      await withServices(async (services) => {
        const created = await services.call<object, Image>(services.images, 'createImage', {
          image: {
            name,
            osType: OS_TYPES[opts.os],
            diskFormat: FORMATS[format],
            visibility: opts.public
              ? ImageVisibility.IMAGE_VISIBILITY_PUBLIC
              : opts.private
                ? ImageVisibility.IMAGE_VISIBILITY_PROJECT
                : ImageVisibility.IMAGE_VISIBILITY_UNSPECIFIED,
          },
          project: opts.project ?? '',
        });
        const bar = new ProgressBar(ctx.progress, size);
        try {
          ctx.printer().one(await upload(services, created, path, { ...opts, bar }), imageView);
        } finally {
          bar.finish();
        }
      });
    });

  noun
    .command('list')
    .description('List the images you can see')
    .action(async () => {
      const images = await withServices((services) =>
        listAll(async (page) => {
          const res = await services.call<object, { images: Image[]; nextPageToken: string }>(
            services.images,
            'listImages',
            page,
          );
          return { items: res.images, nextPageToken: res.nextPageToken };
        }),
      );
      ctx.printer().many(images, imageView);
    });

  noun
    .command('show')
    .description('Show one image')
    .argument('<image>', 'id or name')
    .action(async (id: string) => {
      const image = await withServices((s) => s.call<object, Image>(s.images, 'getImage', { id }));
      ctx.printer().one(image, imageView);
    });

  noun
    .command('delete')
    .description('Delete an image and its stored file')
    .argument('<image>', 'id or name')
    .action(async (id: string) => {
      await withServices((s) => s.call(s.images, 'deleteImage', { id }));
      ctx.printer().done(`image ${id} deleted`);
    });

  noun
    .command('receive')
    .description(
      'Receive one disk image over plain TCP, like `nc -l PORT > FILE` (fed by a capture task or `dd if=/dev/sdX bs=8M | nc HOST PORT`)',
    )
    .requiredOption('--listen <[host:]port>', 'where to listen; port 0 picks a free one (printed on stderr)')
    .requiredOption('--out <file>', 'the file to write')
    .option('--force', 'replace FILE if it exists')
    .option('--sha256 <hex>', 'fail unless the bytes received hash to this')
    .option('--size <bytes>', 'fail unless exactly this many bytes arrive (a short stream fails)')
    .action(async (opts: ImageReceiveOptions) => {
      await receive(ctx, opts);
    });

  noun
    .command('receive-port')
    .description(
      'Open a capture port of the controller for an image (created if it does not exist, else QUEUED or KILLED) and print the `dd | nc` line to run on the node, e.g. from a LiveCD',
    )
    .argument('<image>', 'id or name')
    .addOption(
      new Option('--os <type>', 'a new image’s operating system (default linux)').choices(
        Object.keys(OS_TYPES),
      ),
    )
    .option('--sha256 <hex>', 'KILL the image unless the bytes hash to this')
    .option(
      '--size <bytes>',
      'KILL the image unless exactly this many bytes arrive (catches a sender cut short)',
    )
    .option('--ttl <duration>', 'how long the port waits for the connection: 90s, 10m, 2h, 7d', '1h')
    .action(
      async (
        id: string,
        opts: { sha256?: string; size?: string; ttl: string; os?: keyof typeof OS_TYPES },
      ) => {
        const ttl = parseDuration(opts.ttl);
        if (!ttl) throw new UsageError(`--ttl ${opts.ttl}: expected a duration like 90s, 10m, 2h or 7d`);
        if (opts.sha256 !== undefined && !/^[0-9a-f]{64}$/i.test(opts.sha256)) {
          throw new UsageError('--sha256: expected 64 hex digits');
        }
        if (opts.size !== undefined && !/^[0-9]+$/.test(opts.size))
          throw new UsageError('--size: expected bytes');
        const res = await withServices(async (s) => {
          await ensureImage(s, id, opts.os);
          return s.call<object, ReceiveImageResponse>(s.images, 'receiveImage', {
            id,
            expectedSha256: opts.sha256 ?? '',
            expectedSizeBytes: opts.size === undefined ? 0 : Number(opts.size),
            ttl,
          });
        });
        const colon = res.receiver.lastIndexOf(':');
        const host = res.receiver.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
        const command = `dd if=/dev/sdX bs=8M | nc -N ${host} ${res.receiver.slice(colon + 1)}`;
        ctx.printer().report({
          text: () =>
            `image ${res.image?.name ?? id} waits on ${res.receiver} for one connection until ${formatTime(res.expireTime)}; on the node run:\n` +
            `  ${command}\n` +
            '(busybox nc: leave out -N; traditional netcat: -q 0 instead of -N)\n',
          json: () => ({
            receiver: res.receiver,
            expire_time: res.expireTime?.toISOString() ?? '',
            command,
            image: res.image ? imageView.json(res.image) : undefined,
          }),
        });
      },
    );

  noun
    .command('url')
    .description('Print a signed download URL for the image (for curl, or a node without a token)')
    .argument('<image>', 'id or name')
    .option('--ttl <duration>', 'how long the URL works: 90s, 10m, 2h, 7d', '10m')
    .action(async (id: string, opts: { ttl: string }) => {
      const ttl = parseDuration(opts.ttl);
      if (!ttl) throw new UsageError(`--ttl ${opts.ttl}: expected a duration like 90s, 10m, 2h or 7d`);
      const res = await withServices((s) =>
        s.call<object, { url: string; expireTime: Date }>(s.images, 'createImageUrl', { id, ttl }),
      );
      ctx.printer().report({
        text: () => `${res.url}\n`,
        json: () => ({ url: res.url, expire_time: res.expireTime.toISOString() }),
      });
    });
}

interface ImageReceiveOptions {
  listen: string;
  out: string;
  force?: boolean;
  sha256?: string;
  size?: string;
}

/** `bmctl image receive`: one connection into a file, progress on stderr, size and digest on stdout. */
async function receive(ctx: CommandContext, opts: ImageReceiveOptions): Promise<void> {
  const listen = parseListen(opts.listen);
  if (!listen)
    throw new UsageError(`--listen ${opts.listen}: expected [HOST:]PORT, e.g. 9000 or 10.0.0.1:9000`);
  if (opts.sha256 !== undefined && !/^[0-9a-f]{64}$/i.test(opts.sha256)) {
    throw new UsageError('--sha256: expected 64 hex digits');
  }
  if (opts.size !== undefined && !/^[0-9]+$/.test(opts.size)) throw new UsageError('--size: expected bytes');
  const expectedSize = opts.size === undefined ? undefined : Number(opts.size);
  const path = resolve(ctx.secrets.cwd, opts.out);
  const live = new LiveLines({ ...ctx.progress, now: () => ctx.now() });
  const started = ctx.now();
  let result: Awaited<ReturnType<typeof receiveOne>>;
  try {
    result = await receiveOne({
      ...listen,
      path,
      force: opts.force ?? false,
      onListening: (address) => ctx.progress.write(`listening on ${address}; waiting for one connection\n`),
      onBytes: (bytes) => {
        const seconds = (ctx.now() - started) / 1000;
        live.set(
          'receive',
          describeProgress({
            phase: 'receiving',
            bytesDone: bytes,
            bytesTotal: expectedSize ?? 0,
            rateBytesPerSecond: seconds > 0 ? Math.round(bytes / seconds) : 0,
            message: '',
          }),
          'receiving',
        );
      },
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new BmctlError(`${opts.out} exists; give --force to replace it`);
    throw new BmctlError(`cannot receive into ${opts.out}: ${(err as Error).message}`, { cause: err });
  }
  ctx.printer().report({
    text: () =>
      `received ${result.sizeBytes} bytes from ${result.peer} into ${opts.out}\nsha256 ${result.sha256}\n`,
    json: () => ({ file: path, size_bytes: result.sizeBytes, sha256: result.sha256, peer: result.peer }),
  });
  if (result.broken) {
    throw new BmctlError(
      `the connection broke after ${result.sizeBytes} bytes (${result.broken}): ${opts.out} is incomplete`,
    );
  }
  if (expectedSize !== undefined && result.sizeBytes !== expectedSize) {
    throw new BmctlError(
      `${result.sizeBytes < expectedSize ? 'short stream' : 'too many bytes'}: received ${result.sizeBytes} bytes, expected ${expectedSize}; ${opts.out} is not the image`,
    );
  }
  if (opts.sha256 !== undefined && result.sha256 !== opts.sha256.toLowerCase()) {
    throw new BmctlError(
      `digest mismatch: received bytes hash to ${result.sha256}, expected ${opts.sha256.toLowerCase()}`,
    );
  }
}
