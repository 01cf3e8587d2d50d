import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * This controller's identity, kept in its data directory so that it survives
 * restarts: a controller that comes back after a crash recognises the flow
 * leases it held and resumes them at once instead of waiting for them to expire.
 */
export function controllerId(dataDir: string): string {
  const file = join(dataDir, 'controller.id');
  try {
    const id = readFileSync(file, 'utf8').trim();
    if (id) return id;
  } catch {
    // First start.
  }
  const id = `controller-${randomUUID()}`;
  writeFileSync(file, `${id}\n`, { mode: 0o600 });
  return id;
}
