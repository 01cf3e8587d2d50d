import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { RpcMetrics } from '../api/metrics.ts';
import type { Logger } from '../log/logger.ts';

/** One HTTP endpoint beyond the built-in ones, e.g. image downloads (image-routes.ts). */
export interface HttpRoute {
  /** Matched against the path without the query; capture groups are passed to `handle`. */
  path: RegExp;
  methods: readonly string[];
  handle(req: IncomingMessage, res: ServerResponse, params: string[], url: URL): Promise<void>;
}

/**
 * The controller's HTTP listener: liveness, Prometheus metrics and the
 * routes it is given (images, the agent binary; boot assets later).
 */
export function createHttpServer(deps: {
  metrics: RpcMetrics;
  ready: () => boolean;
  routes?: readonly HttpRoute[];
  log?: Logger;
}): Server {
  // Uploads of multi-GiB images take longer than Node's default 5-minute request timeout; slow
  // clients are still cut by the headers timeout.
  return createServer({ requestTimeout: 0 }, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://controller');
    const path = url.pathname;
    for (const route of deps.routes ?? []) {
      const match = route.path.exec(path);
      if (!match) continue;
      if (!route.methods.includes(req.method ?? '')) {
        res.writeHead(405, { allow: route.methods.join(', ') }).end();
        return;
      }
      route.handle(req, res, match.slice(1), url).catch((err: unknown) => {
        if (res.headersSent) {
          // The client went away mid-body, or the file did: nothing left to tell it.
          res.destroy();
          return;
        }
        const correlationId = randomUUID();
        deps.log?.error({ err, path, correlationId }, 'http request failed');
        res
          .writeHead(500, { 'content-type': 'text/plain' })
          .end(`internal error (correlation id ${correlationId})\n`);
      });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/healthz') {
      const ok = deps.ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'shutting down\n');
    } else if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(deps.metrics.render());
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
}
