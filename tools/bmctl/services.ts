import { type Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import * as agentPb from '../../build/gen/ingot/v1/agent.ts';
import { AgentServiceClient } from '../../build/gen/ingot/v1/agent.ts';
import * as imagePb from '../../build/gen/ingot/v1/image.ts';
import { ImageServiceClient } from '../../build/gen/ingot/v1/image.ts';
import * as taskPb from '../../build/gen/ingot/v1/task.ts';
import { TaskServiceClient } from '../../build/gen/ingot/v1/task.ts';
import { CALL_TIMEOUT_MS, type ConnectionSettings } from './connection.ts';

type Callback<Res> = (err: ServiceError | null, response: Res) => void;

/**
 * The image, task and agent services, whose calls include streams (uploads,
 * WatchTask) that the unary `Inventory` helper does not cover. One channel
 * for all three; close it when done.
 */
export class AgentServices {
  readonly images: ImageServiceClient;
  readonly tasks: TaskServiceClient;
  readonly agents: AgentServiceClient;
  readonly #token: string | undefined;

  constructor(settings: ConnectionSettings) {
    const insecure = credentials.createInsecure();
    this.images = new ImageServiceClient(settings.endpoint, insecure);
    const shared = { channelOverride: this.images.getChannel() };
    this.tasks = new TaskServiceClient(settings.endpoint, insecure, shared);
    this.agents = new AgentServiceClient(settings.endpoint, insecure, shared);
    this.#token = settings.token;
  }

  /** The bearer token as call metadata. */
  metadata(): Metadata {
    const metadata = new Metadata();
    if (this.#token !== undefined) metadata.set('authorization', `Bearer ${this.#token}`);
    return metadata;
  }

  /**
   * One unary call with the token and a 30 s deadline; rejects with the ServiceError. The request
   * may be partial: it goes through its message's `fromPartial` (`getImage` → GetImageRequest).
   */
  call<Req, Res>(client: Client, method: string, partial: Req): Promise<Res> {
    const codecName = `${method.charAt(0).toUpperCase()}${method.slice(1)}Request`;
    const codec = [imagePb, taskPb, agentPb]
      .map((module) => (module as Record<string, unknown>)[codecName])
      .find(
        (c): c is { fromPartial(o: unknown): Req } =>
          typeof c === 'object' && c !== null && 'fromPartial' in c,
      );
    if (!codec) throw new Error(`no request message for ${method}`);
    const request = codec.fromPartial(partial);
    const fn = (client as unknown as Record<string, unknown>)[method] as (
      r: Req,
      m: Metadata,
      o: { deadline: number },
      cb: Callback<Res>,
    ) => void;
    return new Promise((resolve, reject) =>
      fn.call(client, request, this.metadata(), { deadline: Date.now() + CALL_TIMEOUT_MS }, (err, res) =>
        err ? reject(err) : resolve(res),
      ),
    );
  }

  close(): void {
    this.images.close();
  }
}

/** `90s`, `10m`, `2h`, `7d` → a protobuf Duration; undefined for undefined. */
export function parseDuration(text: string | undefined): { seconds: number; nanos: number } | undefined {
  if (text === undefined) return undefined;
  const match = /^(\d+)(s|m|h|d)$/.exec(text.trim());
  if (!match) return undefined;
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[match[2] as 's' | 'm' | 'h' | 'd'];
  return { seconds: Number(match[1]) * unit, nanos: 0 };
}

/** 1536 → `1.5 KiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}
