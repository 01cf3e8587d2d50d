import { randomUUID } from 'node:crypto';
import { Metadata, type StatusObject, status } from '@grpc/grpc-js';
import type { Any } from '../../../build/gen/google/protobuf/any.ts';
import { BadRequest, ErrorInfo } from '../../../build/gen/google/rpc/error_details.ts';
import { Status } from '../../../build/gen/google/rpc/status.ts';
import { IngotError } from '../domain/errors.ts';
import type { Logger } from '../log/logger.ts';

/** google.rpc.ErrorInfo.domain for every Ingot error. */
export const ERROR_DOMAIN = 'ingot.dev';

function pack(typeName: string, bytes: Uint8Array): Any {
  return { typeUrl: `type.googleapis.com/${typeName}`, value: Buffer.from(bytes) };
}

/**
 * The one place errors become gRPC statuses. Typed errors carry their code,
 * an ErrorInfo with a stable reason and, for bad input, BadRequest field
 * violations in `grpc-status-details-bin`. Anything else is INTERNAL with a
 * correlation id that points at the full error in the log; its text never
 * reaches the client.
 */
export function toStatus(err: unknown, log: Logger, method: string): Partial<StatusObject> {
  if (err instanceof IngotError) {
    const details: Any[] = [
      pack(
        'google.rpc.ErrorInfo',
        ErrorInfo.encode({ reason: err.reason, domain: ERROR_DOMAIN, metadata: err.metadata }).finish(),
      ),
    ];
    if (err.violations.length > 0) {
      details.push(
        pack(
          'google.rpc.BadRequest',
          BadRequest.encode({
            fieldViolations: err.violations.map((v) => ({ ...v, reason: '', localizedMessage: undefined })),
          }).finish(),
        ),
      );
    }
    return withDetails(err.code, err.message, details);
  }
  const correlationId = randomUUID();
  log.error({ err, method, correlationId }, 'unexpected error');
  const info = ErrorInfo.encode({
    reason: 'INTERNAL',
    domain: ERROR_DOMAIN,
    metadata: { correlation_id: correlationId },
  }).finish();
  return withDetails(
    status.INTERNAL,
    `internal error (correlation id ${correlationId}); the controller log has the details`,
    [pack('google.rpc.ErrorInfo', info)],
  );
}

function withDetails(code: status, message: string, details: Any[]): Partial<StatusObject> {
  const metadata = new Metadata();
  metadata.set('grpc-status-details-bin', Buffer.from(Status.encode({ code, message, details }).finish()));
  return { code, details: message, metadata };
}
