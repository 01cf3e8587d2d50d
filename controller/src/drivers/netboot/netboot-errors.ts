import { status } from '@grpc/grpc-js';
import { IngotError } from '../../domain/errors.ts';

/** Netboot could not do what was asked: dnsmasq refused, died or did not confirm, or a file could not be written. */
export class NetbootError extends IngotError {
  constructor(reason: string, message: string, metadata: Record<string, string> = {}) {
    super(status.UNAVAILABLE, reason, message, { metadata });
  }
}

/** A node did not reach the netboot step a flow waited for. The message says how far it got. */
export class NetbootTimeoutError extends IngotError {
  readonly node: string;
  readonly reached: string;

  constructor(f: { node: string; reached: string; waitedMs: number; hint: string }) {
    super(
      status.DEADLINE_EXCEEDED,
      'NETBOOT_TIMEOUT',
      `node ${f.node} ${f.reached} within ${Math.round(f.waitedMs / 1000)} s; ${f.hint}`,
      { metadata: { node: f.node } },
    );
    this.node = f.node;
    this.reached = f.reached;
  }
}
