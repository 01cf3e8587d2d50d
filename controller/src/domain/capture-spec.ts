import { DISK_HINT } from './inventory.ts';
import {
  CAPTURE_BLOCK_BYTES_DEFAULT,
  CAPTURE_BLOCK_BYTES_MAX,
  CAPTURE_BLOCK_BYTES_MIN,
  type CaptureSpecBody,
  isDiskPath,
  parseHostPort,
} from './tasks.ts';
import { Violations } from './violations.ts';

/**
 * A capture spec checked and its defaults filled in (block size 8 MiB,
 * trimmed receiver and image). Exactly one destination: `receiver` (a
 * HOST:PORT) or `image`; `compress` only with `image`. Throws
 * InvalidArgumentError with every violation, under `spec.capture.*`.
 */
export function checkCaptureSpec(c: CaptureSpecBody): CaptureSpecBody {
  const violations = new Violations();
  if (!isDiskPath(c.disk)) violations.add('spec.capture.disk', DISK_HINT);
  const blockSizeBytes = c.blockSizeBytes || CAPTURE_BLOCK_BYTES_DEFAULT;
  if (
    blockSizeBytes < CAPTURE_BLOCK_BYTES_MIN ||
    blockSizeBytes > CAPTURE_BLOCK_BYTES_MAX ||
    blockSizeBytes % 512 !== 0
  ) {
    violations.add(
      'spec.capture.block_size_bytes',
      `must be a multiple of 512 from 512 to ${CAPTURE_BLOCK_BYTES_MAX} (64 MiB), or 0 for 8 MiB`,
    );
  }
  const receiver = c.receiver.trim();
  const image = c.image.trim();
  if (receiver && image) {
    violations.add(
      'spec.capture.receiver',
      'must be empty with spec.capture.image: the controller fills in its capture port; give one destination',
    );
  } else if (!receiver && !image) {
    violations.add(
      'spec.capture.image',
      'give an image (id or name, QUEUED or KILLED) to capture into the store, or a receiver HOST:PORT (bmctl image receive --listen PORT, or nc -l PORT > FILE)',
    );
  } else if (receiver && !parseHostPort(receiver)) {
    violations.add('spec.capture.receiver', 'must be HOST:PORT (an IPv6 address in brackets), port 1-65535');
  }
  if (c.compress && !image) {
    violations.add(
      'spec.capture.compress',
      'goes with spec.capture.image only: a plain receiver (nc -l) gets the disk byte for byte',
    );
  }
  violations.throwIfAny();
  return {
    disk: c.disk,
    blockSizeBytes,
    count: c.count,
    skip: c.skip,
    toLastPartition: c.toLastPartition,
    strict: c.strict,
    receiver,
    image,
    compress: c.compress,
  };
}
