import { status } from '@grpc/grpc-js';
import { IngotError } from '../../domain/errors.ts';

/**
 * A switch refused, failed or did not answer. `switchMessage` is the
 * switch's (or the transport's) own words, e.g. `No vlan matches vlan tag
 * 999 for interface ge-0/0/3.0`; `transient` says whether the same change
 * may succeed if simply retried later.
 */
export class SwitchError extends IngotError {
  readonly switchName: string;
  readonly switchMessage: string;
  readonly transient: boolean;

  constructor(
    code: status,
    reason: string,
    message: string,
    fields: { switchName: string; switchMessage: string; transient: boolean; cause?: unknown },
    metadata: Record<string, string> = {},
  ) {
    super(code, reason, message, {
      metadata: { switch: fields.switchName, switch_message: fields.switchMessage, ...metadata },
      cause: fields.cause,
    });
    this.switchName = fields.switchName;
    this.switchMessage = fields.switchMessage;
    this.transient = fields.transient;
  }
}

type Fields = { switchName: string; switchMessage: string; cause?: unknown };

/** No connection: wrong address or port, network down, switch rebooting, or the session dropped. Retried. */
export class SwitchUnreachableError extends SwitchError {
  constructor(f: Fields) {
    super(
      status.UNAVAILABLE,
      'SWITCH_UNREACHABLE',
      `switch ${f.switchName} is unreachable (${f.switchMessage}); check its address, port and management network`,
      { ...f, transient: true },
    );
  }
}

/** The switch refused the credentials. Not retried: switches lock accounts too. */
export class SwitchAuthError extends SwitchError {
  constructor(f: Fields) {
    super(
      status.FAILED_PRECONDITION,
      'SWITCH_AUTH_FAILED',
      `switch ${f.switchName} refused the login: ${f.switchMessage}; fix the switch's username, password or SSH key`,
      { ...f, transient: false },
    );
  }
}

/** The switch presented another SSH host key than the pinned one: a replaced switch, or someone in between. */
export class SwitchHostKeyMismatchError extends SwitchError {
  readonly pinned: string;
  readonly presented: string;

  constructor(f: { switchName: string; pinned: string; presented: string }) {
    super(
      status.FAILED_PRECONDITION,
      'SWITCH_HOST_KEY_MISMATCH',
      `switch ${f.switchName} presented SSH host key ${f.presented}, but ${f.pinned} is pinned; if the switch was really replaced, set its host_key_fingerprint to the new key (or clear it to pin on next use)`,
      { switchName: f.switchName, switchMessage: 'host key changed', transient: false },
      { pinned: f.pinned, presented: f.presented },
    );
    this.pinned = f.pinned;
    this.presented = f.presented;
  }
}

/** Another session holds the configuration lock (an operator in `configure exclusive`, another tool). Retried. */
export class SwitchLockedError extends SwitchError {
  constructor(f: Fields) {
    super(
      status.UNAVAILABLE,
      'SWITCH_CONFIG_LOCKED',
      `switch ${f.switchName} configuration is locked by another session: ${f.switchMessage}; retry when it is released`,
      { ...f, transient: true },
    );
  }
}

/**
 * The switch rejected the change (commit check, syntax). Its message is the
 * switch's own; the change was discarded and nothing was left configured.
 */
export class SwitchConfigRejectedError extends SwitchError {
  /** For syntax errors: the element the switch did not accept (`bad-element`). */
  readonly badElement: string;

  constructor(f: Fields & { badElement?: string; hint?: string }) {
    const bad = f.badElement ? ` (bad element <${f.badElement}>)` : '';
    super(
      status.FAILED_PRECONDITION,
      'SWITCH_CONFIG_REJECTED',
      `switch ${f.switchName} rejected the change: ${f.switchMessage}${bad}; the change was discarded${f.hint ? `; ${f.hint}` : ''}`,
      { ...f, transient: false },
      f.badElement ? { bad_element: f.badElement } : {},
    );
    this.badElement = f.badElement ?? '';
  }
}

/** A step did not finish in time; the session was dropped, which releases the lock and rolls back. */
export class SwitchTimeoutError extends SwitchError {
  constructor(f: Fields & { step: string; timeoutMs: number }) {
    super(
      status.DEADLINE_EXCEEDED,
      'SWITCH_TIMEOUT',
      `switch ${f.switchName} did not answer ${f.step} within ${f.timeoutMs} ms; the session was dropped, so the switch releases its lock and rolls back any unconfirmed change`,
      { ...f, transient: true },
      { step: f.step },
    );
  }
}

/** The switch accepted the commit but reads back another state; the change was rolled back. */
export class PortReadbackError extends SwitchError {
  constructor(f: { switchName: string; port: string; wanted: string; got: string }) {
    super(
      status.FAILED_PRECONDITION,
      'SWITCH_READBACK_MISMATCH',
      `switch ${f.switchName} port ${f.port} reads back as ${f.got} after the commit, not ${f.wanted}; the change was rolled back (look for apply-groups or scripts that rewrite the port)`,
      { switchName: f.switchName, switchMessage: `port ${f.port} is ${f.got}`, transient: false },
      { port: f.port },
    );
  }
}

/** The switch spoke something other than the expected protocol (framing, unexpected reply). */
export class SwitchProtocolError extends SwitchError {
  constructor(f: Fields) {
    super(
      status.UNAVAILABLE,
      'SWITCH_PROTOCOL_ERROR',
      `switch ${f.switchName} answered something unexpected: ${f.switchMessage}`,
      { ...f, transient: false },
    );
  }
}

/** A Linux host acting as a switch failed a command (`ip link set …`). */
export class SwitchCommandError extends SwitchError {
  constructor(f: Fields & { command: string }) {
    super(
      status.FAILED_PRECONDITION,
      'SWITCH_COMMAND_FAILED',
      `switch ${f.switchName}: \`${f.command}\` failed: ${f.switchMessage}`,
      { ...f, transient: false },
      { command: f.command },
    );
  }
}

/** The port named in the inventory does not exist on the switch. */
export class SwitchPortNotFoundError extends SwitchError {
  constructor(f: { switchName: string; port: string; switchMessage: string }) {
    super(
      status.FAILED_PRECONDITION,
      'SWITCH_PORT_NOT_FOUND',
      `switch ${f.switchName} has no port ${f.port} (${f.switchMessage}); fix the node's switch_port`,
      { ...f, transient: false },
      { port: f.port },
    );
  }
}
