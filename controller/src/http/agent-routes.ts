import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { sendFile } from './file-response.ts';
import type { HttpRoute } from './server.ts';

/** Where the bootstrap image fetches the agent from. */
export const AGENT_BINARY_PATH = '/agent/ingot-agent';

/** Its SHA-256, `<hex>  ingot-agent\n` (sha256sum's format), which the bootstrap image checks. */
export const AGENT_SHA256_PATH = '/agent/ingot-agent.sha256';

/**
 * `GET|HEAD /agent/ingot-agent`: the agent executable (`make agent`) for the
 * bootstrap image to download and run; `GET|HEAD /agent/ingot-agent.sha256`:
 * its SHA-256, computed once per version of the file (size and mtime) and
 * also sent as the `x-checksum-sha256` header of the executable. They carry no
 * secrets (the node's token comes on the kernel command line), so they need no
 * credentials.
 */
export function agentRoutes(deps: { agentBinary: string }): HttpRoute[] {
  let cached: { version: string; sha256: Promise<string> } | undefined;
  /** The file's size, mtime and SHA-256, or undefined when there is no agent executable. */
  async function agentFile() {
    const file = await stat(deps.agentBinary).catch(() => undefined);
    if (!file?.isFile()) return undefined;
    const version = `${file.size}-${Math.floor(file.mtimeMs)}`;
    if (cached?.version !== version) {
      const hash = createHash('sha256');
      const sha256 = pipeline(createReadStream(deps.agentBinary, { highWaterMark: 1 << 20 }), hash).then(() =>
        hash.digest('hex'),
      );
      cached = { version, sha256 };
      // A failed read (the file replaced mid-way) is not remembered.
      sha256.catch(() => {
        if (cached?.sha256 === sha256) cached = undefined;
      });
    }
    return { sizeBytes: file.size, etag: `"agent-${version}"`, sha256: await cached.sha256 };
  }
  const missing = (res: ServerResponse): void => {
    res
      .writeHead(404, { 'content-type': 'text/plain' })
      .end(`no agent executable at ${deps.agentBinary}; build it with \`make agent\`\n`);
  };

  return [
    {
      path: /^\/agent\/ingot-agent$/,
      methods: ['GET', 'HEAD'],
      async handle(req, res) {
        const file = await agentFile();
        if (!file) return missing(res);
        res.setHeader('x-checksum-sha256', file.sha256);
        await sendFile(req, res, {
          path: deps.agentBinary,
          sizeBytes: file.sizeBytes,
          etag: file.etag,
          contentType: 'application/octet-stream',
        });
      },
    },
    {
      path: /^\/agent\/ingot-agent\.sha256$/,
      methods: ['GET', 'HEAD'],
      async handle(req, res) {
        const file = await agentFile();
        if (!file) return missing(res);
        const body = `${file.sha256}  ingot-agent\n`;
        res.writeHead(200, {
          'content-type': 'text/plain',
          'content-length': Buffer.byteLength(body),
          etag: file.etag,
          'cache-control': 'no-store',
        });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
    },
  ];
}
