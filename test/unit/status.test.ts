import { Writable } from 'node:stream';
import { type StatusObject, status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { BadRequest, ErrorInfo } from '../../build/gen/google/rpc/error_details.ts';
import { Status } from '../../build/gen/google/rpc/status.ts';
import { ERROR_DOMAIN, toStatus } from '../../controller/src/api/status.ts';
import { InvalidArgumentError, NotFoundError } from '../../controller/src/domain/errors.ts';
import { createLogger } from '../../controller/src/log/logger.ts';

/** A real pino logger whose JSON lines land in `lines`. */
function memoryLogger() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { log: createLogger('info', sink), lines };
}

/** The google.rpc.Status a client decodes from grpc-status-details-bin. */
function richStatus(result: Partial<StatusObject>): Status {
  const values = result.metadata?.get('grpc-status-details-bin') ?? [];
  expect(values).toHaveLength(1);
  return Status.decode(values[0] as Buffer);
}

function errorInfo(rich: Status): ErrorInfo {
  const any = rich.details.find((d) => d.typeUrl === 'type.googleapis.com/google.rpc.ErrorInfo');
  expect(any).toBeDefined();
  return ErrorInfo.decode(any?.value ?? new Uint8Array());
}

const CORRELATION = /correlation id ([0-9a-f-]{36})/;

describe('toStatus', () => {
  it('maps InvalidArgumentError to INVALID_ARGUMENT with ErrorInfo and BadRequest violations', () => {
    const { log, lines } = memoryLogger();
    const violations = [
      { field: 'node.mac', description: 'must be a unicast MAC address like 52:54:00:12:34:56' },
      { field: 'node.ram_mb', description: 'is required' },
    ];
    const result = toStatus(
      new InvalidArgumentError(violations),
      log,
      '/ingot.v1.InventoryService/CreateNode',
    );

    expect(result.code).toBe(status.INVALID_ARGUMENT);
    expect(result.code).toBe(3);
    expect(result.details).toBe(
      'node.mac: must be a unicast MAC address like 52:54:00:12:34:56; node.ram_mb: is required',
    );
    const rich = richStatus(result);
    expect(rich.code).toBe(3);
    expect(rich.message).toBe(result.details);
    expect(rich.details.map((d) => d.typeUrl)).toEqual([
      'type.googleapis.com/google.rpc.ErrorInfo',
      'type.googleapis.com/google.rpc.BadRequest',
    ]);
    expect(errorInfo(rich)).toEqual({ reason: 'INVALID_ARGUMENT', domain: 'ingot.dev', metadata: {} });
    const badRequest = BadRequest.decode(rich.details[1]?.value ?? new Uint8Array());
    expect(badRequest.fieldViolations.map(({ field, description }) => ({ field, description }))).toEqual(
      violations,
    );
    expect(lines).toEqual([]);
  });

  it('maps NotFoundError to NOT_FOUND with its reason and metadata and no BadRequest', () => {
    const { log, lines } = memoryLogger();
    const result = toStatus(new NotFoundError('node', 'rack1-n7'), log, '/ingot.v1.InventoryService/GetNode');

    expect(result.code).toBe(status.NOT_FOUND);
    expect(result.code).toBe(5);
    expect(result.details).toBe('node "rack1-n7" does not exist');
    const rich = richStatus(result);
    expect(rich.details).toHaveLength(1);
    expect(errorInfo(rich)).toEqual({
      reason: 'NODE_NOT_FOUND',
      domain: ERROR_DOMAIN,
      metadata: { kind: 'node', ref: 'rack1-n7' },
    });
    expect(lines).toEqual([]);
  });

  it('keeps the cause of a typed error out of the status', () => {
    const { log } = memoryLogger();
    const err = new NotFoundError('switch', 'sw1');
    err.cause = new Error('connection to 10.9.9.9 refused, password=hunter2');
    const result = toStatus(err, log, '/m');
    const bytes = Buffer.from(result.metadata?.get('grpc-status-details-bin')[0] as Buffer);
    expect(`${result.details}${bytes.toString('latin1')}`).not.toMatch(/hunter2|10\.9\.9\.9/);
  });

  it.each([
    ['an Error', new Error('relation "node" does not exist at 10.9.9.9, password=hunter2')],
    ['a thrown string', 'password=hunter2 at 10.9.9.9'],
  ])('maps %s to INTERNAL with a correlation id and logs the original', (_, thrown) => {
    const { log, lines } = memoryLogger();
    const result = toStatus(thrown, log, '/ingot.v1.InventoryService/ListNodes');

    expect(result.code).toBe(status.INTERNAL);
    const correlationId = CORRELATION.exec(result.details ?? '')?.[1];
    expect(correlationId).toBeDefined();
    const rich = richStatus(result);
    expect(rich.code).toBe(status.INTERNAL);
    expect(rich.message).toBe(result.details);
    expect(errorInfo(rich)).toEqual({
      reason: 'INTERNAL',
      domain: 'ingot.dev',
      metadata: { correlation_id: correlationId },
    });
    const wire = Buffer.from(result.metadata?.get('grpc-status-details-bin')[0] as Buffer).toString('latin1');
    expect(`${result.details}${wire}`).not.toMatch(/hunter2|10\.9\.9\.9|does not exist/);

    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 'error',
      msg: 'unexpected error',
      method: '/ingot.v1.InventoryService/ListNodes',
      correlationId,
    });
    expect(JSON.stringify(lines[0]?.err)).toContain('10.9.9.9');
  });

  it('logs the stack of an unexpected Error', () => {
    const { log, lines } = memoryLogger();
    toStatus(new TypeError('cannot read properties of undefined'), log, '/m');
    expect(lines[0]?.err).toMatchObject({
      type: 'TypeError',
      message: 'cannot read properties of undefined',
      stack: expect.stringContaining('TypeError'),
    });
  });

  it('gives each unexpected error its own correlation id', () => {
    const { log, lines } = memoryLogger();
    const first = CORRELATION.exec(toStatus(new Error('a'), log, '/m').details ?? '')?.[1];
    const second = CORRELATION.exec(toStatus(new Error('b'), log, '/m').details ?? '')?.[1];
    expect(first).not.toBe(second);
    expect(lines.map((l) => l.correlationId)).toEqual([first, second]);
  });
});
