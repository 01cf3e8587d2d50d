import { status } from '@grpc/grpc-js';
import { IngotError } from '../../domain/errors.ts';

/**
 * A BMC refused, failed or did not answer. `bmcMessage` is the BMC's (or the
 * tool's) own words, e.g. `RAKP 2 HMAC is invalid`; `transient` says whether
 * the same command may succeed if simply retried later.
 */
export class BmcError extends IngotError {
  readonly bmc: string;
  readonly bmcMessage: string;
  readonly transient: boolean;

  constructor(
    code: status,
    reason: string,
    message: string,
    fields: { bmc: string; driver: string; bmcMessage: string; transient: boolean; cause?: unknown },
  ) {
    super(code, reason, message, {
      metadata: { bmc: fields.bmc, driver: fields.driver, bmc_message: fields.bmcMessage },
      cause: fields.cause,
    });
    this.bmc = fields.bmc;
    this.bmcMessage = fields.bmcMessage;
    this.transient = fields.transient;
  }

  /** Names the node the BMC belongs to, for callers that know it. */
  forNode(node: string): this {
    this.metadata.node = node;
    return this;
  }
}

type Fields = { bmc: string; driver: string; bmcMessage: string; cause?: unknown };

/** No answer: wrong address or port, network down, BMC hung. Retried. */
export class BmcUnreachableError extends BmcError {
  constructor(f: Fields) {
    super(
      status.UNAVAILABLE,
      'BMC_UNREACHABLE',
      `BMC ${f.bmc} did not answer (${f.bmcMessage}); check its address, port and network, or raise bmc_options.timeout_ms`,
      { ...f, transient: true },
    );
  }
}

/**
 * The BMC refused the credentials (or the privilege level). Never retried:
 * BMCs lock accounts after a few failed logins.
 */
export class BmcAuthError extends BmcError {
  constructor(f: Fields) {
    super(
      status.FAILED_PRECONDITION,
      'BMC_AUTH_FAILED',
      `BMC ${f.bmc} refused the credentials: ${f.bmcMessage}; fix the node's bmc_username/bmc_password`,
      { ...f, transient: false },
    );
  }
}

/** Out of sessions or otherwise busy. Retried with backoff. */
export class BmcBusyError extends BmcError {
  constructor(f: Fields) {
    super(
      status.UNAVAILABLE,
      'BMC_BUSY',
      `BMC ${f.bmc} is busy (${f.bmcMessage}); retry later, or look for other tools holding sessions on it`,
      { ...f, transient: true },
    );
  }
}

/** The BMC does not support the command, parameter or cipher suite. */
export class BmcUnsupportedError extends BmcError {
  constructor(f: Fields & { hint?: string }) {
    super(
      status.FAILED_PRECONDITION,
      'BMC_UNSUPPORTED',
      `BMC ${f.bmc} does not support this: ${f.bmcMessage}${f.hint ? `; ${f.hint}` : ''}`,
      { ...f, transient: false },
    );
  }
}

/** Any other failure the tool reported; not retried because its cause is unknown. */
export class BmcCommandError extends BmcError {
  constructor(f: Fields) {
    super(status.UNAVAILABLE, 'BMC_ERROR', `BMC ${f.bmc} command failed: ${f.bmcMessage}`, {
      ...f,
      transient: false,
    });
  }
}

/** The BMC accepted a boot device but reads back another one. */
export class BootDeviceMismatchError extends BmcError {
  constructor(f: { bmc: string; driver: string; wanted: string; got: string }) {
    super(
      status.FAILED_PRECONDITION,
      'BMC_BOOT_DEVICE_MISMATCH',
      `BMC ${f.bmc} accepted boot device ${f.wanted} but reports ${f.got}; it may not support that device`,
      { bmc: f.bmc, driver: f.driver, bmcMessage: `boot device reads back as ${f.got}`, transient: false },
    );
  }
}

/** The BMC accepted a power command but never reported the target state. */
export class PowerStateTimeoutError extends IngotError {
  constructor(f: { bmc: string; target: string; observed: string; waitedMs: number }) {
    super(
      status.DEADLINE_EXCEEDED,
      'POWER_STATE_TIMEOUT',
      `BMC ${f.bmc} accepted power ${f.target} but still reports ${f.observed} after ${Math.round(f.waitedMs / 1000)} s; check the machine, or raise bmc_options.power_wait_ms`,
      { metadata: { bmc: f.bmc, target: f.target, observed: f.observed } },
    );
  }
}

/** The command-line tool the driver needs is not installed on the controller host. */
export class PowerToolMissingError extends IngotError {
  constructor(tool: string, pkg: string) {
    super(
      status.FAILED_PRECONDITION,
      'POWER_TOOL_MISSING',
      `${tool} is not installed on the controller host; install the Debian package ${pkg}`,
      { metadata: { tool } },
    );
  }
}
