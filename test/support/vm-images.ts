/**
 * What the VM lab boots: the bootstrap image (`make bootstrap`, build/bootstrap) and the test image
 * deployed to VMs (tools/lab/test-image.sh, build/test-image/disk.img). Both builds are
 * incremental and run under the bootstrap build's lock (test files run in parallel).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import type { BuiltLabImage } from '../../tools/lab/lab-image.ts';
import { REPO_ROOT } from './process.ts';

const BUILD_LOCK = join(REPO_ROOT, 'build/.bootstrap-build.lock');
/** What the test image prints on the serial console once up: `<marker> up on <mac> at <address>`. */
export const TEST_IMAGE_MARKER = 'INGOT-TEST-IMAGE';

/** Builds (if needed) the bootstrap image and the test image; returns the test image. */
export async function ensureVmImages(): Promise<BuiltLabImage> {
  const run = (script: string) =>
    execa('flock', [BUILD_LOCK, join(REPO_ROOT, script)], {
      cwd: REPO_ROOT,
      env: { BOOTSTRAP_BOOT_CHECK: '0' },
      timeout: 600_000,
      all: true,
    });
  await run('bootstrap/build.sh');
  const path = (await run('tools/lab/test-image.sh')).stdout.trim().split('\n').at(-1) as string;
  const data = readFileSync(path);
  return {
    path,
    sizeBytes: data.length,
    marker: TEST_IMAGE_MARKER,
    sha256: createHash('sha256').update(data).digest('hex'),
  };
}
