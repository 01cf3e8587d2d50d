import { status } from '@grpc/grpc-js';

/** One invalid field of a request, as `google.rpc.BadRequest.FieldViolation`. */
export interface FieldViolation {
  /** Path in proto (snake_case) names, e.g. `node.mac`. */
  field: string;
  description: string;
}

/**
 * Base of every failure Ingot reports to a caller. `reason` is a stable
 * machine-readable code (google.rpc.ErrorInfo.reason); `message` says what
 * happened and what to do next; `metadata` carries the identifiers involved.
 * `cause` is for logs only and is never sent to clients.
 */
export class IngotError extends Error {
  readonly code: status;
  readonly reason: string;
  readonly metadata: Record<string, string>;
  readonly violations: FieldViolation[];

  constructor(
    code: status,
    reason: string,
    message: string,
    opts: { metadata?: Record<string, string>; violations?: FieldViolation[]; cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.reason = reason;
    this.metadata = opts.metadata ?? {};
    this.violations = opts.violations ?? [];
  }
}

export class InvalidArgumentError extends IngotError {
  constructor(violations: FieldViolation[]) {
    const summary = violations.map((v) => `${v.field}: ${v.description}`).join('; ');
    super(status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', summary, { violations });
  }
}

export class NotFoundError extends IngotError {
  constructor(kind: string, ref: string) {
    super(status.NOT_FOUND, `${kind.toUpperCase()}_NOT_FOUND`, `${kind} "${ref}" does not exist`, {
      metadata: { kind, ref },
    });
  }
}

export class AlreadyExistsError extends IngotError {
  constructor(kind: string, field: string, value: string) {
    super(
      status.ALREADY_EXISTS,
      `${kind.toUpperCase()}_ALREADY_EXISTS`,
      `a ${kind} with ${field} "${value}" already exists`,
      { metadata: { kind, field, value } },
    );
  }
}

/** The object exists but is in a state that forbids the operation. */
export class FailedPreconditionError extends IngotError {
  constructor(reason: string, message: string, metadata: Record<string, string> = {}) {
    super(status.FAILED_PRECONDITION, reason, message, { metadata });
  }
}

export class UnauthenticatedError extends IngotError {
  constructor(message: string) {
    super(status.UNAUTHENTICATED, 'UNAUTHENTICATED', message);
  }
}

export class PermissionDeniedError extends IngotError {
  constructor(message: string) {
    super(status.PERMISSION_DENIED, 'PERMISSION_DENIED', message);
  }
}

/** The scheduler found no host for a request; the message names the filter and the closest misses. */
export class NoValidHostError extends IngotError {
  constructor(message: string) {
    super(status.RESOURCE_EXHAUSTED, 'NO_VALID_HOST', message);
  }
}
