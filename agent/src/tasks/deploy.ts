import { createHash } from 'node:crypto';
import type { Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { DeployInstructions } from '../../../build/gen/ingot/v1/agent.ts';
import { AlignedWriter } from '../disk/aligned-writer.ts';
import { checkAllowed, describeDevice, openDisk } from '../disk/block-device.ts';
import { endRanges, zeroRanges } from '../disk/zero.ts';
import { type BodyTarget, download } from '../transport/download.ts';
import type { TaskContext, TaskOutcomeValue } from './context.ts';
import { InflatingTarget, RawTarget, ZstdTarget } from './deploy-targets.ts';
import { Reason, TaskFailure } from './task-failure.ts';

/** Decompressed bytes per chunk handed to the writer. @default 512 KiB */
const INFLATE_CHUNK_BYTES = 512 << 10;

/**
 * Streams an image onto a disk in one pass: HTTP (resumed with Range after
 * a dropped connection) → SHA-256 of the bytes received → gunzip or zstd
 * when compressed → large aligned writes, with no temporary file and fixed
 * memory. The partition-table head is written last, after the digest and
 * size checked out; on any failure after writing began, both ends of the
 * disk (and of the image's span) are zeroed, so a corrupt or partial image
 * never boots. An image larger than the disk is refused before anything
 * is written.
 */
export async function deploy(spec: DeployInstructions, ctx: TaskContext): Promise<TaskOutcomeValue> {
  const { progress, signal, log } = ctx;
  progress.update('checking', 0, spec.virtualSizeBytes);
  const device = await describeDevice(spec.disk);
  await checkAllowed(ctx.disks, spec.disk, device.real);
  if (spec.virtualSizeBytes > device.sizeBytes) {
    throw new TaskFailure(
      Reason.IMAGE_TOO_LARGE,
      `the image needs ${spec.virtualSizeBytes} bytes but ${spec.disk} has ${device.sizeBytes}; choose a larger disk or a smaller image`,
      {
        metadata: {
          disk: spec.disk,
          virtual_size_bytes: String(spec.virtualSizeBytes),
          disk_size_bytes: String(device.sizeBytes),
        },
      },
    );
  }
  const disk = await openDisk(spec.disk, ctx.disks);
  const writer = new AlignedWriter({
    // Two 8 MiB writes in flight keep a disk busy; more only cost memory.
    inFlight: 2,
    handle: disk.handle,
    buffered: disk.buffered,
    direct: disk.direct,
    logicalBlockBytes: disk.logicalBlockBytes,
  });
  log.info(
    { disk: disk.path, direct: disk.direct, format: spec.format, bytes: spec.virtualSizeBytes },
    'deploy started',
  );
  let wrote = false;
  try {
    const hash = createHash('sha256');
    const onBytes = () => {
      wrote = true;
      progress.update('writing', writer.bytesAccepted, spec.virtualSizeBytes);
    };
    const inflater = inflaterFor(spec.format);
    const target =
      spec.format === 'zstd'
        ? new ZstdTarget(writer, hash, onBytes, spec.virtualSizeBytes || disk.sizeBytes)
        : inflater
          ? new InflatingTarget(writer, hash, inflater, onBytes)
          : new RawTarget(writer, hash, onBytes);
    progress.update('writing', 0, spec.virtualSizeBytes);
    try {
      await download(spec.url, new DiskBound(target, writer, disk.sizeBytes, spec.disk), {
        sizeBytes: spec.sizeBytes,
        signal,
        onResume: (offset, cause) => {
          log.warn({ offset, err: cause }, 'image download interrupted; resuming');
          progress.update(
            'resuming',
            writer.bytesAccepted,
            spec.virtualSizeBytes,
            `connection lost at byte ${offset} of the image; resuming there`,
          );
        },
      });
      if (target instanceof InflatingTarget || target instanceof ZstdTarget) await target.finish();
    } catch (err) {
      if (err instanceof TaskFailure || signal.aborted) throw err;
      if (spec.format !== 'raw' && /^(Z_|ZSTD_)/.test((err as { code?: string }).code ?? '')) {
        throw new TaskFailure(
          Reason.IMAGE_DATA_INVALID,
          `the image is not valid ${spec.format} data: ${(err as Error).message}`,
          { cause: err },
        );
      }
      throw new TaskFailure(
        Reason.DISK_WRITE_FAILED,
        `writing ${spec.disk} failed: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    progress.update('syncing', writer.bytesAccepted, spec.virtualSizeBytes);
    await writer.flush();
    const sha256 = hash.digest('hex');
    if (sha256 !== spec.sha256.toLowerCase()) {
      throw new TaskFailure(
        Reason.DIGEST_MISMATCH,
        `the image received hashes to ${sha256}, not ${spec.sha256}; its partition tables were wiped, deploy again`,
        { metadata: { expected: spec.sha256, actual: sha256 } },
      );
    }
    if (spec.virtualSizeBytes > 0 && writer.bytesAccepted !== spec.virtualSizeBytes) {
      throw new TaskFailure(
        Reason.SIZE_MISMATCH,
        `the image decompressed to ${writer.bytesAccepted} bytes, not the announced ${spec.virtualSizeBytes}`,
      );
    }
    await writer.commit();
    progress.update('done', writer.bytesWritten, spec.virtualSizeBytes);
    log.info({ disk: disk.path, bytes: writer.bytesWritten, sha256 }, 'deploy finished');
    return { sha256, bytesWritten: writer.bytesWritten };
  } catch (err) {
    if (wrote) {
      progress.update(
        'wiping',
        0,
        0,
        'the deploy failed; wiping the partition tables so the disk does not boot a partial image',
      );
      await zeroRanges(disk, endRanges(disk.sizeBytes, writer.bytesAccepted)).catch((wipeErr: unknown) =>
        log.error({ err: wipeErr }, 'could not wipe the partition tables after a failed deploy'),
      );
    }
    throw err;
  } finally {
    await writer.release();
    await disk.close();
  }
}

/** gzip's stream decoder (zstd has its own, ZstdTarget); undefined for raw images. */
function inflaterFor(format: string): Transform | undefined {
  if (format === 'gzip') return createGunzip({ chunkSize: INFLATE_CHUNK_BYTES });
  if (format === 'zstd' || format === 'raw' || format === '') return undefined;
  throw new TaskFailure(Reason.UNSUPPORTED_TASK, `this agent cannot write images in format ${format}`);
}

/** Refuses bytes past the end of the disk (an image whose virtual size was understated). */
class DiskBound implements BodyTarget {
  readonly #inner: BodyTarget;
  readonly #writer: AlignedWriter;
  readonly #diskBytes: number;
  readonly #disk: string;
  #failed: TaskFailure | undefined;

  constructor(inner: BodyTarget, writer: AlignedWriter, diskBytes: number, disk: string) {
    this.#inner = inner;
    this.#writer = writer;
    this.#diskBytes = diskBytes;
    this.#disk = disk;
  }

  region(): Buffer | undefined {
    return this.#failed ? undefined : this.#inner.region();
  }

  filled(n: number): void {
    this.#inner.filled(n);
    if (this.#writer.bytesAccepted > this.#diskBytes) {
      this.#failed = new TaskFailure(Reason.IMAGE_TOO_LARGE, `the image is larger than ${this.#disk}`);
    }
  }

  async ready(): Promise<void> {
    if (this.#failed) throw this.#failed;
    await this.#inner.ready();
    if (this.#failed) throw this.#failed;
  }
}
