import type { FieldViolation } from '../../domain/errors.ts';
import {
  type NetworkDriver,
  type PortChange,
  type PortChangeOutcome,
  type PortStatus,
  unknownOptions,
} from './network-driver.ts';

/**
 * Flat networks: there is nothing to switch, so a move only updates Ingot's
 * records. Ports report no VLANs; the flipper records the network asked for.
 */
export class NoopDriver implements NetworkDriver {
  readonly name = 'noop';

  validateOptions(options: Readonly<Record<string, string>>): FieldViolation[] {
    return unknownOptions(options, [], this.name);
  }

  async applyPortChanges(_sw: unknown, changes: readonly PortChange[]): Promise<PortChangeOutcome[]> {
    return changes.map((c) => ({ port: c.port, changed: false }));
  }

  async portStatus(_sw: unknown, port: string): Promise<PortStatus> {
    return { port, mode: '', vlanIds: [], bridge: '', link: '' };
  }
}
