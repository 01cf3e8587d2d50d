import type { IncomingMessage, ServerResponse } from 'node:http';
import { Metadata, status } from '@grpc/grpc-js';
import { authenticate } from '../api/auth.ts';
import { IngotError } from '../domain/errors.ts';
import { isId } from '../domain/formats.ts';
import type { ImageStore } from '../images/image-store.ts';
import { uploadImage } from '../images/images.ts';
import type { UrlSigner } from '../images/url-signer.ts';
import type { Logger } from '../log/logger.ts';
import type { Database } from '../store/orm.ts';
import { sendFile } from './file-response.ts';
import type { HttpRoute } from './server.ts';

/** The path of an image's bytes; download URLs add `?expires=…&sig=…`. */
export function imageFilePath(imageId: string): string {
  return `/v1/images/${imageId}/file`;
}

/** gRPC status → HTTP status for the JSON errors of these routes. */
const HTTP_STATUS: Partial<Record<status, number>> = {
  [status.INVALID_ARGUMENT]: 400,
  [status.UNAUTHENTICATED]: 401,
  [status.PERMISSION_DENIED]: 403,
  [status.NOT_FOUND]: 404,
  [status.ALREADY_EXISTS]: 409,
  [status.FAILED_PRECONDITION]: 409,
};

function sendError(res: ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { 'content-type': 'application/json' }).end(`${JSON.stringify({ reason, message })}\n`);
}

/**
 * `GET|HEAD /v1/images/{id}/file?expires=…&sig=…` serves an ACTIVE image's
 * bytes to whoever holds a signed URL (nodes have no API token), with Range
 * support for resumed downloads. `PUT /v1/images/{id-or-name}/file` with a
 * bearer token uploads an image's bytes, as UploadImage does; an optional
 * `x-image-sha256` header is checked against them.
 */
export function imageRoutes(deps: {
  db: Database;
  store: ImageStore;
  signer: UrlSigner;
  log: Logger;
}): HttpRoute[] {
  return [
    {
      path: /^\/v1\/images\/([A-Za-z0-9._-]{1,64})\/file$/,
      methods: ['GET', 'HEAD', 'PUT'],
      async handle(req, res, [ref = ''], url) {
        if (req.method === 'PUT') await upload(req, res, ref);
        else await download(req, res, ref, url);
      },
    },
  ];

  async function download(req: IncomingMessage, res: ServerResponse, id: string, url: URL): Promise<void> {
    if (
      !isId(id) ||
      !deps.signer.verify(id.toLowerCase(), url.searchParams.get('expires'), url.searchParams.get('sig'))
    ) {
      sendError(
        res,
        403,
        'URL_NOT_VALID',
        'this download URL has expired or was not issued for this image; ask for a new one (bmctl image url)',
      );
      return;
    }
    const file = await deps.store.stat(id);
    if (!file) {
      sendError(
        res,
        404,
        'IMAGE_NOT_FOUND',
        `image ${id} has no stored bytes (deleted, or not uploaded yet)`,
      );
      return;
    }
    await sendFile(req, res, {
      path: deps.store.pathOf(id),
      sizeBytes: file.sizeBytes,
      etag: `"${id.toLowerCase()}-${file.sizeBytes}-${Math.floor(file.mtimeMs)}"`,
      contentType: 'application/octet-stream',
    });
  }

  async function upload(req: IncomingMessage, res: ServerResponse, ref: string): Promise<void> {
    const metadata = new Metadata();
    if (req.headers.authorization) metadata.set('authorization', req.headers.authorization);
    const abort = new AbortController();
    req.on('aborted', () => abort.abort(new Error('the client went away')));
    try {
      const caller = await authenticate(metadata, deps.db.fork());
      const expected = req.headers['x-image-sha256'];
      const image = await uploadImage(deps, caller, ref, req, {
        ...(typeof expected === 'string' ? { expectedSha256: expected } : {}),
        signal: abort.signal,
      });
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        `${JSON.stringify({
          id: image.id,
          name: image.name,
          status: image.status,
          size_bytes: image.sizeBytes,
          virtual_size_bytes: image.virtualSizeBytes,
          sha256: image.sha256,
        })}\n`,
      );
    } catch (err) {
      if (!(err instanceof IngotError)) throw err;
      // The body may not have been read: do not keep a half-read upload's connection.
      res.setHeader('connection', 'close');
      sendError(res, HTTP_STATUS[err.code] ?? 500, err.reason, err.message);
    }
  }
}
