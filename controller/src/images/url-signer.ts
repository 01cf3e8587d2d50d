import { createHmac, timingSafeEqual } from 'node:crypto';

/** What a download URL carries besides the image id. */
export interface UrlSignature {
  /** Unix seconds after which the URL stops working. */
  expires: number;
  /** base64url HMAC-SHA256 over the purpose, the image id and `expires`. */
  sig: string;
}

/**
 * Signs image download URLs: each signature is bound to one image and an
 * expiry, so a URL leaked from a node's console opens nothing else and
 * stops working. Controllers sharing the secret key file verify each
 * other's URLs.
 */
export class UrlSigner {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    this.#key = key;
  }

  sign(imageId: string, expiresAt: Date): UrlSignature {
    const expires = Math.floor(expiresAt.getTime() / 1000);
    return { expires, sig: this.#mac(imageId, expires) };
  }

  /** True when `sig` was made by this key for this image and `expires` is still ahead of `now`. */
  verify(imageId: string, expires: string | null, sig: string | null, now = new Date()): boolean {
    if (!expires || !sig || !/^\d{1,12}$/.test(expires)) return false;
    const seconds = Number(expires);
    if (seconds * 1000 <= now.getTime()) return false;
    const expected = Buffer.from(this.#mac(imageId, seconds));
    const given = Buffer.from(sig);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  #mac(imageId: string, expires: number): string {
    return createHmac('sha256', this.#key)
      .update(`image-download\n${imageId}\n${expires}`)
      .digest('base64url');
  }
}
