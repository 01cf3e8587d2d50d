import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  type CallOptions,
  type Client,
  type ClientReadableStream,
  type ClientUnaryCall,
  credentials,
  Metadata,
  type ServiceError,
} from '@grpc/grpc-js';
import { CaptureServiceClient, CaptureServiceService } from '../../build/gen/ingot/v1/capture.ts';
import { InstanceServiceClient, InstanceServiceService } from '../../build/gen/ingot/v1/instance.ts';
import { InventoryServiceClient } from '../../build/gen/ingot/v1/inventory.ts';
import { NetworkServiceClient, NetworkServiceService } from '../../build/gen/ingot/v1/network.ts';
import { PowerServiceClient, PowerServiceService } from '../../build/gen/ingot/v1/power.ts';
import { SchedulerServiceClient, SchedulerServiceService } from '../../build/gen/ingot/v1/scheduler.ts';
import { BmctlError } from './errors.ts';

/** @default the controller's default listen address */
export const DEFAULT_ENDPOINT = '127.0.0.1:7700';
/** Deadline of every RPC bmctl makes. */
export const CALL_TIMEOUT_MS = 30_000;
/** The controller's data directory when INGOT_DATA_DIR is unset, relative to the working directory. */
export const DEFAULT_DATA_DIR = 'ingot-data';
const TOKEN_FILE = 'admin.token';

/** Where to connect and as whom. */
export interface ConnectionSettings {
  /** `host:port` of the controller's gRPC listener. */
  endpoint: string;
  /** Bearer token; undefined sends no `authorization` metadata. */
  token: string | undefined;
}

/**
 * Resolves the endpoint (`--endpoint`, INGOT_ENDPOINT, 127.0.0.1:7700) and
 * the token (`--token`, INGOT_TOKEN, then the admin token the controller
 * wrote to `$INGOT_DATA_DIR/admin.token`, or `./ingot-data/admin.token` when
 * INGOT_DATA_DIR is unset). A missing token file means no token; an
 * unreadable one is an error, so a permissions problem is not mistaken for
 * an authentication one.
 */
export async function resolveConnectionSettings(
  flags: { endpoint?: string | undefined; token?: string | undefined },
  env: Record<string, string | undefined>,
  cwd: string,
): Promise<ConnectionSettings> {
  const endpoint = nonEmpty(flags.endpoint) ?? nonEmpty(env.INGOT_ENDPOINT) ?? DEFAULT_ENDPOINT;
  const token = nonEmpty(flags.token) ?? nonEmpty(env.INGOT_TOKEN) ?? (await readTokenFile(env, cwd));
  return { endpoint, token };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

async function readTokenFile(
  env: Record<string, string | undefined>,
  cwd: string,
): Promise<string | undefined> {
  const path = join(resolve(cwd, nonEmpty(env.INGOT_DATA_DIR) ?? DEFAULT_DATA_DIR), TOKEN_FILE);
  try {
    return nonEmpty(await readFile(path, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new BmctlError(
      `cannot read the admin token from ${path}: ${(err as Error).message}; fix its permissions or give --token`,
      { cause: err },
    );
  }
}

/** A grpc-js client method in its (request, metadata, options, callback) form. */
type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (err: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** A grpc-js client method in its server-streaming (request, metadata, options) form. */
type StreamMethod<Req, Res> = (
  request: Req,
  metadata?: Metadata,
  options?: Partial<CallOptions>,
) => ClientReadableStream<Res>;

/** Names of one generated client's unary RPCs in its camelCase, e.g. `getSwitch`. */
type RpcOf<C> = {
  [K in keyof C]: C[K] extends StreamMethod<never, unknown>
    ? never
    : C[K] extends UnaryMethod<never, unknown>
      ? K
      : never;
}[keyof C];

/** Names of one generated client's server-streaming RPCs, e.g. `watchInstance`. */
type StreamRpcOf<C> = {
  [K in keyof C]: C[K] extends StreamMethod<never, unknown> ? K : never;
}[keyof C];

/** Names of InventoryService's RPCs, e.g. `getSwitch`. */
export type InventoryRpc = RpcOf<InventoryServiceClient>;
/** Every RPC bmctl makes through Inventory: InventoryService's, InstanceService's, SchedulerService's, PowerService's, NetworkService's and CaptureService's (no name is in two). */
export type ControllerRpc =
  | InventoryRpc
  | RpcOf<InstanceServiceClient>
  | RpcOf<CaptureServiceClient>
  | RpcOf<SchedulerServiceClient>
  | RpcOf<PowerServiceClient>
  | RpcOf<NetworkServiceClient>;
type Clients = InventoryServiceClient &
  InstanceServiceClient &
  CaptureServiceClient &
  SchedulerServiceClient &
  PowerServiceClient &
  NetworkServiceClient;
export type RequestOf<K extends ControllerRpc> =
  Clients[K] extends UnaryMethod<infer Req, unknown> ? Req : never;
export type ResponseOf<K extends ControllerRpc> =
  Clients[K] extends UnaryMethod<never, infer Res> ? Res : never;
/** Every server-streaming RPC bmctl makes, e.g. `watchInstance`. */
export type ControllerStreamRpc = StreamRpcOf<InstanceServiceClient> | StreamRpcOf<CaptureServiceClient>;
export type StreamRequestOf<K extends ControllerStreamRpc> =
  Clients[K] extends StreamMethod<infer Req, unknown> ? Req : never;
export type StreamResponseOf<K extends ControllerStreamRpc> =
  Clients[K] extends StreamMethod<never, infer Res> ? Res : never;

/** The controller's services (inventory, instances, captures, scheduler, power, network) as promises; close it when done. */
export interface Inventory {
  readonly endpoint: string;
  /**
   * Makes one call with the bearer token and a deadline (30 s unless `timeoutMs` says otherwise, as
   * power changes that wait for the chassis do); rejects with the grpc-js ServiceError.
   */
  call<K extends ControllerRpc>(
    rpc: K,
    request: RequestOf<K>,
    opts?: { timeoutMs?: number },
  ): Promise<ResponseOf<K>>;
  /**
   * Opens a server stream with the bearer token and no deadline (watches last as long as what they
   * follow); the messages as they come, until the controller ends the stream. A failed call throws the
   * ServiceError from the loop; leaving the loop early cancels the call.
   */
  stream<K extends ControllerStreamRpc>(
    rpc: K,
    request: StreamRequestOf<K>,
  ): AsyncIterable<StreamResponseOf<K>>;
  close(): void;
}

/** Opens one plain-TCP channel that every service's calls share; nothing is sent until the first call. */
export function openInventory(settings: ConnectionSettings): Inventory {
  const insecure = credentials.createInsecure();
  const inventory = new InventoryServiceClient(settings.endpoint, insecure);
  const shared = { channelOverride: inventory.getChannel() };
  const instances = new InstanceServiceClient(settings.endpoint, insecure, shared);
  const scheduler = new SchedulerServiceClient(settings.endpoint, insecure, shared);
  const power = new PowerServiceClient(settings.endpoint, insecure, shared);
  const network = new NetworkServiceClient(settings.endpoint, insecure, shared);
  const captures = new CaptureServiceClient(settings.endpoint, insecure, shared);
  const clientFor = (rpc: ControllerRpc | ControllerStreamRpc): Client =>
    rpc in InstanceServiceService
      ? instances
      : rpc in CaptureServiceService
        ? captures
        : rpc in SchedulerServiceService
          ? scheduler
          : rpc in PowerServiceService
            ? power
            : rpc in NetworkServiceService
              ? network
              : inventory;
  const authorization = () => {
    const metadata = new Metadata();
    if (settings.token !== undefined) metadata.set('authorization', `Bearer ${settings.token}`);
    return metadata;
  };
  return {
    endpoint: settings.endpoint,
    call(rpc, request, opts = {}) {
      const metadata = authorization();
      const client = clientFor(rpc);
      const method = (client as unknown as Record<string, unknown>)[rpc] as UnaryMethod<
        typeof request,
        ResponseOf<typeof rpc>
      >;
      return new Promise((resolvePromise, reject) => {
        method.call(
          client,
          request,
          metadata,
          { deadline: Date.now() + (opts.timeoutMs ?? CALL_TIMEOUT_MS) },
          (err, response) => (err ? reject(err) : resolvePromise(response)),
        );
      });
    },
    async *stream(rpc, request) {
      const client = clientFor(rpc);
      const method = (client as unknown as Record<string, unknown>)[rpc] as StreamMethod<
        typeof request,
        StreamResponseOf<typeof rpc>
      >;
      const call = method.call(client, request, authorization(), {});
      try {
        for await (const message of call as AsyncIterable<StreamResponseOf<typeof rpc>>) yield message;
      } finally {
        call.cancel();
      }
    },
    close() {
      // The channel is shared: closing it once ends every client's calls.
      inventory.close();
    },
  };
}

/** Page size bmctl asks for when it fetches a whole list. */
export const LIST_PAGE_SIZE = 200;

/**
 * Fetches every page of a list, `LIST_PAGE_SIZE` items at a time. `fetchPage`
 * gets the page size and token and returns the page's items and next token.
 */
export async function listAll<T>(
  fetchPage: (page: {
    pageSize: number;
    pageToken: string;
  }) => Promise<{ items: T[]; nextPageToken: string }>,
): Promise<T[]> {
  const all: T[] = [];
  const seen = new Set<string>();
  let pageToken = '';
  do {
    const page = await fetchPage({ pageSize: LIST_PAGE_SIZE, pageToken });
    all.push(...page.items);
    // A token seen before would loop forever; that is a controller bug, not something to retry.
    if (seen.has(page.nextPageToken)) {
      throw new BmctlError(`the controller returned page token "${page.nextPageToken}" twice; stopping`);
    }
    seen.add(page.nextPageToken);
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  return all;
}
