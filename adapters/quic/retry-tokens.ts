/**
 * Keys for the stateless-retry tokens of the adapter's QUIC server.
 *
 * @matrixai/quic signs its retry tokens (and derives connection ids) with
 * the server's crypto ops, and its tokens carry no time: a recorded handshake
 * could be replayed from the same address for ever, each replay costing the
 * listener a handshake until the timeout. Here the key changes every
 * `lifetimeMs` and the one before still verifies for one more period only if
 * it signed something in the last one: a token is good for at least
 * `lifetimeMs` and less than three times that.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** Default `retryTokenMs`. */
export const DEFAULT_RETRY_TOKEN_MS = 10_000;

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

function hmac(key: Buffer, data: ArrayBuffer): Buffer {
  return createHmac('sha256', key).update(Buffer.from(data)).digest();
}

export class RetryTokens {
  readonly #lifetimeMs: number;
  /** The current key (since when, last used when) and the one before. */
  readonly #keys: { current: Buffer; previous: Buffer | undefined; since: number; signed: number } = {
    current: randomBytes(32),
    previous: undefined,
    since: Date.now(),
    signed: -Infinity,
  };

  constructor(lifetimeMs: number) {
    this.#lifetimeMs = lifetimeMs;
  }

  /** The crypto option of the library's `QUICServer`. */
  serverCrypto(): {
    key: ArrayBuffer;
    ops: { sign(key: ArrayBuffer, data: ArrayBuffer): Promise<ArrayBuffer>; verify(key: ArrayBuffer, data: ArrayBuffer, signature: ArrayBuffer): Promise<boolean> };
  } {
    return {
      key: toArrayBuffer(this.#keys.current),
      ops: {
        sign: async (_key, data) => {
          const keys = this.#rotate();
          keys.signed = Date.now();
          return toArrayBuffer(hmac(keys.current, data));
        },
        verify: async (_key, data, signature) => {
          const given = Buffer.from(signature);
          const { current, previous } = this.#rotate();
          return [current, previous].some((key) => {
            if (key === undefined) return false;
            const expected = hmac(key, data);
            return given.length === expected.length && timingSafeEqual(given, expected);
          });
        },
      },
    };
  }

  /** Changes the key once it has been current for the lifetime, lazily (no timer). */
  #rotate(): { current: Buffer; previous: Buffer | undefined; signed: number } {
    const keys = this.#keys;
    const now = Date.now();
    if (now - keys.since >= this.#lifetimeMs) {
      keys.previous = now - keys.signed < this.#lifetimeMs ? keys.current : undefined;
      keys.current = randomBytes(32);
      keys.since = now;
      keys.signed = -Infinity;
    }
    return keys;
  }
}
