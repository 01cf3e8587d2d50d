import type {
  handleUnaryCall,
  ServerUnaryCall,
  ServiceDefinition,
  sendUnaryData,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { EntityManager } from '@mikro-orm/sql';
import type { Logger } from '../log/logger.ts';
import type { Database } from '../store/orm.ts';
import { type Access, authenticate, authorize, type Caller } from './auth.ts';
import type { RpcMetrics } from './metrics.ts';
import { toStatus } from './status.ts';

/** What every handler gets besides its request. */
export interface CallContext {
  caller: Caller;
  /** A fresh EntityManager for this call alone. */
  em: EntityManager;
  /** Aborted when the client cancels or its deadline passes. */
  signal: AbortSignal;
  log: Logger;
}

export type UnaryHandler<Req, Res> = (request: Req, ctx: CallContext) => Promise<Res>;

export interface RpcDeps {
  db: Database;
  log: Logger;
  metrics: RpcMetrics;
}

/** A handler with the roles allowed to call it. */
export interface Method<Req = never, Res = unknown> {
  access: Access;
  handle: UnaryHandler<Req, Res>;
}

/**
 * Turns `{ MethodName: { access, handle } }` into a grpc-js implementation:
 * authentication and authorization, one EntityManager per call,
 * cancellation as an AbortSignal, and every error mapped in one place.
 */
export function implement(
  definition: ServiceDefinition,
  methods: Record<string, Method<never, unknown>>,
  deps: RpcDeps,
): UntypedServiceImplementation {
  const impl: UntypedServiceImplementation = {};
  for (const [key, def] of Object.entries(definition)) {
    const method = methods[def.path.slice(def.path.lastIndexOf('/') + 1)];
    if (!method) throw new Error(`no handler for ${def.path}`);
    impl[key] = unary(def.path, method, deps);
  }
  return impl;
}

function unary(
  path: string,
  method: Method<never, unknown>,
  deps: RpcDeps,
): handleUnaryCall<unknown, unknown> {
  return (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
    const started = process.hrtime.bigint();
    const abort = new AbortController();
    call.on('cancelled', () => abort.abort(new Error('cancelled by the client')));
    const log = deps.log.child({ method: path });
    const run = async () => {
      const em = deps.db.fork();
      const caller = await authenticate(call.metadata, em);
      authorize(caller, method.access, path);
      return method.handle(call.request as never, { caller, em, signal: abort.signal, log });
    };
    run().then(
      (response) => {
        deps.metrics.observe(path, 'OK', started);
        callback(null, response);
      },
      (err: unknown) => {
        const status = toStatus(err, log, path);
        deps.metrics.observe(path, status.code ?? 2, started);
        log.debug({ code: status.code, message: status.details }, 'rpc failed');
        callback(status, null);
      },
    );
  };
}
