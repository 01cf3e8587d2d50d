import { stat } from 'node:fs/promises';
import { sendFile } from './file-response.ts';
import type { HttpRoute } from './server.ts';

/** Where the bootstrap image fetches the agent from. */
export const AGENT_BINARY_PATH = '/agent/ingot-agent';

/**
 * `GET|HEAD /agent/ingot-agent`: the agent executable (`make agent`) for the
 * bootstrap image to download and run. It carries no secrets (the node's
 * token comes on the kernel command line), so it needs no credentials.
 */
export function agentRoutes(deps: { agentBinary: string }): HttpRoute[] {
  return [
    {
      path: /^\/agent\/ingot-agent$/,
      methods: ['GET', 'HEAD'],
      async handle(req, res) {
        const file = await stat(deps.agentBinary).catch(() => undefined);
        if (!file?.isFile()) {
          res
            .writeHead(404, { 'content-type': 'text/plain' })
            .end(`no agent executable at ${deps.agentBinary}; build it with \`make agent\`\n`);
          return;
        }
        await sendFile(req, res, {
          path: deps.agentBinary,
          sizeBytes: file.size,
          etag: `"agent-${file.size}-${Math.floor(file.mtimeMs)}"`,
          contentType: 'application/octet-stream',
        });
      },
    },
  ];
}
