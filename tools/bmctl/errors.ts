import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { BadRequest, ErrorInfo } from '../../build/gen/google/rpc/error_details.ts';
import { Status } from '../../build/gen/google/rpc/status.ts';

/** Exit status for failures reported by the controller or the local system. */
export const EXIT_FAILURE = 1;
/** Exit status for a command line bmctl cannot act on. */
export const EXIT_USAGE = 2;

/** A failure bmctl detects itself; `message` is printed as is after `bmctl: `. */
export class BmctlError extends Error {
  readonly exitCode: number;

  constructor(message: string, opts: { exitCode?: number; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = new.target.name;
    this.exitCode = opts.exitCode ?? EXIT_FAILURE;
  }
}

/** The command line is wrong: a missing, conflicting or malformed argument. */
export class UsageError extends BmctlError {
  constructor(message: string) {
    super(message, { exitCode: EXIT_USAGE });
  }
}

const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
const BAD_REQUEST_TYPE = 'type.googleapis.com/google.rpc.BadRequest';
const ERROR_INFO_TYPE = 'type.googleapis.com/google.rpc.ErrorInfo';
/** ErrorInfo reason of a boot the scheduler found no host for (RESOURCE_EXHAUSTED). */
const NO_VALID_HOST = 'NO_VALID_HOST';
const NO_VALID_HOST_PHRASE = 'no valid host';

/** What the controller said about a failed call, decoded from its `google.rpc.Status` trailer. */
export interface StatusDetails {
  message: string;
  violations: { field: string; description: string }[];
  /** `google.rpc.ErrorInfo.reason`, e.g. `NODE_LOCKED`; empty when absent. */
  reason: string;
}

/**
 * Decodes the `grpc-status-details-bin` trailer. Returns undefined when the
 * trailer is absent, which means the status did not come from Ingot's error
 * mapping (grpc-js itself failed the call, or something in between did).
 */
export function decodeStatusDetails(metadata: Metadata | undefined): StatusDetails | undefined {
  const raw = metadata?.get(STATUS_DETAILS_KEY)[0];
  if (raw === undefined || typeof raw === 'string') return undefined;
  let decoded: Status;
  try {
    decoded = Status.decode(raw);
  } catch {
    return undefined;
  }
  const details: StatusDetails = { message: decoded.message, violations: [], reason: '' };
  for (const any of decoded.details) {
    if (any.typeUrl === BAD_REQUEST_TYPE) {
      for (const v of BadRequest.decode(any.value).fieldViolations) {
        details.violations.push({ field: v.field, description: v.description });
      }
    } else if (any.typeUrl === ERROR_INFO_TYPE) {
      details.reason = ErrorInfo.decode(any.value).reason;
    }
  }
  return details;
}

export function isServiceError(err: unknown): err is ServiceError {
  return (
    err instanceof Error &&
    typeof (err as Partial<ServiceError>).code === 'number' &&
    (err as Partial<ServiceError>).metadata instanceof Metadata
  );
}

/** `NOT_FOUND` → `not found`. */
function codePhrase(code: status): string {
  const name = status[code] as string | undefined;
  return name === undefined ? `gRPC status ${code}` : name.toLowerCase().replaceAll('_', ' ');
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/**
 * The single line (without `bmctl: ` and newline) that explains a failed call
 * to an operator, e.g. `invalid argument: node.mac: must be a MAC address`.
 * `endpoint` names the controller in transport failures.
 */
export function describeServiceError(err: ServiceError, endpoint: string): string {
  const details = decodeStatusDetails(err.metadata);
  if (details === undefined && err.code === status.UNAVAILABLE) {
    return `cannot reach the controller at ${endpoint} (is it running?)`;
  }
  if (details === undefined && err.code === status.DEADLINE_EXCEEDED) {
    return `the controller at ${endpoint} did not answer in time; retry, or check its log`;
  }
  if (details?.reason === NO_VALID_HOST) {
    // The scheduler's message names the filter that emptied the list; `resource exhausted` would only hide it.
    const message = oneLine(details.message);
    return message.startsWith(NO_VALID_HOST_PHRASE) ? message : `${NO_VALID_HOST_PHRASE}: ${message}`;
  }
  const text =
    details !== undefined && details.violations.length > 0
      ? details.violations.map((v) => `${v.field}: ${v.description}`).join('; ')
      : oneLine(details?.message || err.details || '');
  let line = text === '' ? codePhrase(err.code) : `${codePhrase(err.code)}: ${text}`;
  if (err.code === status.UNAUTHENTICATED) {
    line += ' (give --token, set INGOT_TOKEN, or run where $INGOT_DATA_DIR/admin.token is readable)';
  }
  return line;
}

/** The line to print and the exit status for anything a command threw. */
export function describeFailure(
  err: unknown,
  endpoint: string,
  opts: { debug: boolean },
): { line: string; exitCode: number } {
  if (err instanceof BmctlError) return { line: err.message, exitCode: err.exitCode };
  if (isServiceError(err)) return { line: describeServiceError(err, endpoint), exitCode: EXIT_FAILURE };
  // A bug in bmctl, not an expected failure: keep the stack for whoever debugs it.
  const message = err instanceof Error ? err.message : String(err);
  const more = opts.debug
    ? `\n${err instanceof Error ? err.stack : ''}`
    : ' (set BMCTL_DEBUG=1 for a stack trace)';
  return { line: `unexpected error: ${oneLine(message)}${more}`, exitCode: EXIT_FAILURE };
}
