import type { Readable } from 'node:stream';
import type {
  handleBidiStreamingCall,
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  MethodDefinition,
  ServerDuplexStream,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
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
  /** `host:port` the client dialled (the `:authority`), e.g. to build URLs it can reach. */
  authority: string;
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
 * Sends one message on a response stream; resolves once the stream can take
 * more (flow control), rejects when the client has gone.
 */
export type Send<Res> = (response: Res) => Promise<void>;

/** A call context for streams that authenticate in band, e.g. the agent's token in its first message. */
export type InBandContext = Omit<CallContext, 'caller'> & {
  /** The client's address, e.g. `ipv4:10.0.0.5:41234`. */
  peer: string;
};

/** `access: IN_BAND`: no bearer token; the handler authenticates the caller from the stream itself. */
export const IN_BAND = 'in-band' as const;

/** Server streaming: one request, responses sent until the handler resolves. */
export interface ServerStreamMethod<Req = never, Res = unknown> {
  access: Access;
  stream: 'server';
  handle(request: Req, ctx: CallContext, send: Send<Res>): Promise<void>;
}

/** Client streaming: requests as an async iterable, one response. */
export interface ClientStreamMethod<Req = never, Res = unknown> {
  access: Access;
  stream: 'client';
  handle(requests: AsyncIterable<Req>, ctx: CallContext): Promise<Res>;
}

/** Both directions; `access` may be IN_BAND. The stream ends OK when the handler resolves. */
export interface BidiStreamMethod<Req = never, Res = unknown> {
  access: Access | typeof IN_BAND;
  stream: 'bidi';
  handle(
    requests: AsyncIterable<Req>,
    ctx: InBandContext & { caller?: Caller },
    send: Send<Res>,
  ): Promise<void>;
}

export type StreamMethod = ServerStreamMethod | ClientStreamMethod | BidiStreamMethod;

/** A service's handlers by RPC name, as `implement()` takes them. */
export type Handlers = Record<string, Method<never, unknown> | StreamMethod>;

/**
 * Turns `{ MethodName: { access, handle } }` into a grpc-js implementation:
 * authentication and authorization, one EntityManager per call,
 * cancellation as an AbortSignal, and every error mapped in one place.
 */
export function implement(
  definition: ServiceDefinition,
  methods: Handlers,
  deps: RpcDeps,
): UntypedServiceImplementation {
  const impl: UntypedServiceImplementation = {};
  for (const [key, def] of Object.entries(definition)) {
    const method = methods[def.path.slice(def.path.lastIndexOf('/') + 1)];
    if (!method) throw new Error(`no handler for ${def.path}`);
    const kind = streamKind(def);
    if (('stream' in method ? method.stream : undefined) !== kind) {
      throw new Error(`handler for ${def.path} must be ${kind ?? 'unary'}`);
    }
    if (!('stream' in method)) impl[key] = unary(def.path, method, deps);
    else if (method.stream === 'server') impl[key] = serverStream(def.path, method, deps);
    else if (method.stream === 'client') impl[key] = clientStream(def.path, method, deps);
    else impl[key] = bidiStream(def.path, method, deps);
  }
  return impl;
}

function streamKind(def: MethodDefinition<unknown, unknown>): StreamMethod['stream'] | undefined {
  if (def.requestStream && def.responseStream) return 'bidi';
  if (def.requestStream) return 'client';
  if (def.responseStream) return 'server';
  return undefined;
}

function unary(
  path: string,
  method: Method<never, unknown>,
  deps: RpcDeps,
): handleUnaryCall<unknown, unknown> {
  return (call, callback) =>
    respond(path, method.access, deps, call, callback, (ctx) => method.handle(call.request as never, ctx));
}

/**
 * Answers a call with one response: authenticates and authorizes, runs the
 * handler with its context, and maps any error to a status, once for every
 * such call.
 */
function respond(
  path: string,
  access: Access,
  deps: RpcDeps,
  call: ServerUnaryCall<unknown, unknown> | ServerReadableStream<unknown, unknown>,
  callback: sendUnaryData<unknown>,
  invoke: (ctx: CallContext) => Promise<unknown>,
): void {
  const started = process.hrtime.bigint();
  const abort = callSignal(call);
  const log = deps.log.child({ method: path });
  const run = async () => {
    const em = deps.db.fork();
    const caller = await authenticate(call.metadata, em);
    authorize(caller, access, path);
    return invoke({ caller, em, signal: abort.signal, log, authority: call.getHost() });
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
}

type AnyCall = ServerWritableStream<unknown, unknown> | ServerReadableStream<unknown, unknown>;

/** Aborted when the client cancels, its deadline passes or the call ends. */
function callSignal(
  call: AnyCall | ServerDuplexStream<unknown, unknown> | ServerUnaryCall<unknown, unknown>,
): AbortController {
  const abort = new AbortController();
  (call as { on(event: 'cancelled', listener: () => void): unknown }).on('cancelled', () =>
    abort.abort(new Error('cancelled by the client')),
  );
  return abort;
}

/**
 * The client's messages; ends when the client half-closes and, unlike
 * iterating the call itself, also when it cancels or goes away.
 */
async function* incoming<T>(call: Readable, signal: AbortSignal): AsyncGenerator<T> {
  // Leaving the loop early must not destroy the call: its response side still has to end with a status.
  const it = call.iterator({ destroyOnReturn: false });
  const aborted = new Promise<IteratorResult<unknown>>((resolve) => {
    if (signal.aborted) resolve({ done: true, value: undefined });
    signal.addEventListener('abort', () => resolve({ done: true, value: undefined }), { once: true });
  });
  try {
    for (;;) {
      const next = await Promise.race([it.next(), aborted]);
      if (next.done) return;
      yield next.value as T;
    }
  } finally {
    void it.return?.();
  }
}

function sender<Res>(call: ServerWritableStream<unknown, Res> | ServerDuplexStream<unknown, Res>): Send<Res> {
  return (response) =>
    new Promise((resolve, reject) => {
      if (call.cancelled || call.destroyed) {
        reject(new Error('the client has gone'));
        return;
      }
      if (call.write(response)) resolve();
      else call.once('drain', () => resolve());
    });
}

/**
 * Ends a response stream with an error status. grpc-js 1.14 sends no status
 * on `call.destroy(err)` (the client would hang until its deadline), so the
 * status is emitted as an 'error' event instead.
 */
function failStream(
  call: ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>,
  path: string,
  err: unknown,
  deps: RpcDeps,
  started: bigint,
): void {
  const log = deps.log.child({ method: path });
  const status = toStatus(err, log, path);
  deps.metrics.observe(path, status.code ?? 2, started);
  if (call.cancelled) return;
  log.debug({ code: status.code, message: status.details }, 'rpc failed');
  call.emit('error', status);
}

function serverStream(
  path: string,
  method: ServerStreamMethod,
  deps: RpcDeps,
): handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    const started = process.hrtime.bigint();
    const abort = callSignal(call);
    const log = deps.log.child({ method: path });
    const run = async () => {
      const em = deps.db.fork();
      const caller = await authenticate(call.metadata, em);
      authorize(caller, method.access, path);
      await method.handle(
        call.request as never,
        { caller, em, signal: abort.signal, log, authority: call.getHost() },
        sender(call),
      );
    };
    run().then(
      () => {
        deps.metrics.observe(path, 'OK', started);
        if (!call.cancelled) call.end();
      },
      (err: unknown) => failStream(call, path, err, deps, started),
    );
  };
}

function clientStream(
  path: string,
  method: ClientStreamMethod,
  deps: RpcDeps,
): handleClientStreamingCall<unknown, unknown> {
  return (call, callback) =>
    respond(path, method.access, deps, call, callback, (ctx) =>
      method.handle(incoming(call, ctx.signal), ctx),
    );
}

function bidiStream(
  path: string,
  method: BidiStreamMethod,
  deps: RpcDeps,
): handleBidiStreamingCall<unknown, unknown> {
  return (call) => {
    const started = process.hrtime.bigint();
    const abort = callSignal(call);
    const log = deps.log.child({ method: path });
    const run = async () => {
      const em = deps.db.fork();
      let caller: Caller | undefined;
      if (method.access !== IN_BAND) {
        caller = await authenticate(call.metadata, em);
        authorize(caller, method.access, path);
      }
      await method.handle(
        incoming(call, abort.signal),
        { caller, em, signal: abort.signal, log, authority: call.getHost(), peer: call.getPeer() },
        sender(call),
      );
    };
    run().then(
      () => {
        deps.metrics.observe(path, 'OK', started);
        if (!call.cancelled) call.end();
      },
      (err: unknown) => failStream(call, path, err, deps, started),
    );
  };
}
