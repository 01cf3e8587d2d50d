import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { BadRequest, ErrorInfo } from '../../build/gen/google/rpc/error_details.ts';
import { Status } from '../../build/gen/google/rpc/status.ts';
import * as instancePb from '../../build/gen/ingot/v1/instance.ts';
import * as pb from '../../build/gen/ingot/v1/inventory.ts';
import * as schedulerPb from '../../build/gen/ingot/v1/scheduler.ts';
import { loadConfig } from '../../controller/src/config/config.ts';
import { type RunningController, startController } from '../../controller/src/controller.ts';
import { createLogger } from '../../controller/src/log/logger.ts';
import type { Database } from '../../controller/src/store/orm.ts';

/** The two databases every integration suite runs against. */
export const BACKENDS = ['pglite', 'postgres'] as const;
export type Backend = (typeof BACKENDS)[number];

/** A fresh, empty PostgreSQL database in the throwaway cluster `make test` starts. */
export async function createPgDatabase(): Promise<string> {
  const base = process.env.INGOT_TEST_PG_URL;
  if (!base)
    throw new Error('INGOT_TEST_PG_URL is not set: run the suite with `make test`, which starts PostgreSQL');
  const name = `ingot_${Date.now()}_${Math.random().toString(36).slice(2, 8)}`;
  const client = new pg.Client({ connectionString: base });
  await client.connect();
  try {
    await client.query(`create database ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}

/** A database location for a backend: a PostgreSQL URL, or '' for PGlite in the data dir. */
export async function databaseFor(backend: Backend): Promise<string> {
  return backend === 'postgres' ? createPgDatabase() : '';
}

/** A real controller, in this process, on a free port, with its logs kept for inspection. */
export interface TestController {
  address: string;
  httpAddress: string;
  dataDir: string;
  database: string;
  /** The first admin token, read from `<dataDir>/admin.token` as an operator would. */
  token: string;
  /** Every JSON log line the controller wrote. */
  logs: string[];
  db: Database;
  /** The controller's netboot handle (prepare/remove/waitForBootFile); undefined when netboot is off. */
  netboot: RunningController['netboot'];
  /** Moves nodes' switch ports between networks (setNodeNetwork). */
  network: RunningController['network'];
  stop(): Promise<void>;
}

export async function startTestController(
  opts: {
    backend?: Backend;
    dataDir?: string;
    database?: string;
    /** Extra controller flags, e.g. `--http-advertise-url`. */
    args?: string[];
  } = {},
): Promise<TestController> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'ingot-test-'));
  const database = opts.database ?? (await databaseFor(opts.backend ?? 'pglite'));
  const config = loadConfig(
    [
      '--data-dir',
      dataDir,
      '--grpc-listen',
      '127.0.0.1:0',
      '--http-listen',
      '127.0.0.1:0',
      '--log-level',
      'debug',
      ...(opts.args ?? []),
    ],
    database ? { INGOT_DATABASE: database } : {},
  );
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const running: RunningController = await startController(config, createLogger('debug', sink));
  return {
    address: running.grpcAddress,
    httpAddress: running.httpAddress,
    dataDir,
    database,
    token: readFileSync(join(dataDir, 'admin.token'), 'utf8').trim(),
    logs,
    db: running.db,
    netboot: running.netboot,
    network: running.network,
    stop: () => running.stop(),
  };
}

export function removeDataDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** What a failed call told the caller, decoded from `grpc-status-details-bin`. */
export interface CallError {
  code: grpc.status;
  message: string;
  reason?: string;
  metadata?: Record<string, string>;
  violations: { field: string; description: string }[];
}

export function decodeError(err: grpc.ServiceError): CallError {
  const out: CallError = { code: err.code, message: err.details, violations: [] };
  const bin = err.metadata?.get('grpc-status-details-bin')[0];
  if (bin instanceof Buffer) {
    for (const detail of Status.decode(bin).details) {
      if (detail.typeUrl.endsWith('/google.rpc.ErrorInfo')) {
        const info = ErrorInfo.decode(detail.value);
        out.reason = info.reason;
        out.metadata = info.metadata;
      } else if (detail.typeUrl.endsWith('/google.rpc.BadRequest')) {
        out.violations = BadRequest.decode(detail.value).fieldViolations.map(({ field, description }) => ({
          field,
          description,
        }));
      }
    }
  }
  return out;
}

type Definition = grpc.ServiceDefinition;
type RequestOf<D extends Definition, M extends keyof D> = ReturnType<D[M]['requestDeserialize']>;
type ResponseOf<D extends Definition, M extends keyof D> = ReturnType<D[M]['responseDeserialize']>;
/** A generated module: `CreateNodeRequest` and friends, with `fromPartial`. */
type Codecs = Record<string, unknown>;

/**
 * A generated ts-proto service with promises: `await api.call('createNode', { node: {...} })`
 * resolves with the response or rejects with a CallError. Requests may be partial.
 */
export class ServiceApi<D extends Definition> {
  readonly #definition: D;
  readonly #codecs: Codecs;
  readonly #address: string;
  readonly #token: string | undefined;
  readonly #client: grpc.Client & Record<string, unknown>;

  constructor(definition: D, codecs: Codecs, address: string, token?: string) {
    this.#definition = definition;
    this.#codecs = codecs;
    this.#address = address;
    this.#token = token;
    const Client = grpc.makeGenericClientConstructor(definition, 'ServiceApi');
    this.#client = new Client(address, grpc.credentials.createInsecure()) as grpc.Client &
      Record<string, unknown>;
  }

  withToken(token: string | undefined): ServiceApi<D> {
    return new ServiceApi(this.#definition, this.#codecs, this.#address, token);
  }

  call<M extends keyof D & string>(
    method: M,
    request: DeepPartial<RequestOf<D, M>>,
  ): Promise<ResponseOf<D, M>> {
    const codec = this.#codecs[`${method.charAt(0).toUpperCase()}${method.slice(1)}Request`] as {
      fromPartial(o: unknown): RequestOf<D, M>;
    };
    const metadata = new grpc.Metadata();
    if (this.#token) metadata.set('authorization', `Bearer ${this.#token}`);
    return new Promise((resolve, reject) => {
      const fn = this.#client[method] as (
        r: unknown,
        m: grpc.Metadata,
        cb: (e: grpc.ServiceError | null, r: ResponseOf<D, M>) => void,
      ) => void;
      fn.call(this.#client, codec.fromPartial(request), metadata, (err, res) =>
        err ? reject(decodeError(err)) : resolve(res),
      );
    });
  }

  /** Expects the call to fail and returns how. */
  async fail<M extends keyof D & string>(
    method: M,
    request: DeepPartial<RequestOf<D, M>>,
  ): Promise<CallError> {
    try {
      await this.call(method, request);
    } catch (err) {
      return err as CallError;
    }
    throw new Error(`${method} succeeded but was expected to fail`);
  }

  close(): void {
    this.#client.close();
  }
}

/** InventoryService with promises. */
export class InventoryApi extends ServiceApi<typeof pb.InventoryServiceService> {
  constructor(address: string, token?: string) {
    super(pb.InventoryServiceService, pb, address, token);
  }
}

export const instanceApi = (address: string, token?: string) =>
  new ServiceApi(instancePb.InstanceServiceService, instancePb, address, token);

export const schedulerApi = (address: string, token?: string) =>
  new ServiceApi(schedulerPb.SchedulerServiceService, schedulerPb, address, token);

type DeepPartial<T> = T extends Date | Buffer
  ? T
  : T extends (infer U)[]
    ? DeepPartial<U>[]
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;
