import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { sendFile } from './file-response.ts';
import type { HttpRoute } from './server.ts';

/** The files of the bootstrap image (`make bootstrap`) and the URL paths they are served at. */
const BOOT_FILES = { vmlinuz: 'vmlinuz', 'initrd.img': 'initrd.img' } as const;

/**
 * `GET|HEAD /boot/vmlinuz` and `/boot/initrd.img`: the bootstrap image's kernel
 * and initramfs from `bootstrapDir`, for iPXE (netboot's default `kernelUrl`
 * and `initrdUrl` point here) and anyone booting it by hand. With `Range`
 * support; 404 naming the directory and `make bootstrap` when it is not built.
 * They carry no secrets, so they need no credentials.
 */
export function bootstrapRoutes(deps: { bootstrapDir: string }): HttpRoute[] {
  return [
    {
      path: /^\/boot\/(vmlinuz|initrd\.img)$/,
      methods: ['GET', 'HEAD'],
      async handle(req, res, params) {
        const name = BOOT_FILES[params[0] as keyof typeof BOOT_FILES];
        const path = join(deps.bootstrapDir, name);
        const file = await stat(path).catch(() => undefined);
        if (!file?.isFile()) {
          res
            .writeHead(404, { 'content-type': 'text/plain' })
            .end(`no ${name} in ${deps.bootstrapDir}; build the bootstrap image with \`make bootstrap\`\n`);
          return;
        }
        await sendFile(req, res, {
          path,
          sizeBytes: file.size,
          etag: `"${name}-${file.size}-${Math.floor(file.mtimeMs)}"`,
          contentType: 'application/octet-stream',
        });
      },
    },
  ];
}
