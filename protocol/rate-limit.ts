/**
 * A token bucket per key: per remote address for the inbound connection rate
 * limit of admission control (the engine and the adapters that enforce
 * admission themselves), and one bucket for the QUIC control channel's
 * message budget. It knows nothing of its users.
 *
 * Each key has a bucket of `connections` tokens that refills continuously at
 * `connections` per `windowMs`: a burst of `connections` at once, then that
 * many per window on average. An attempt takes a token or is refused (a
 * refused attempt takes nothing, so a peer that backs off gets back in).
 *
 * Memory is bounded: at most `maxKeys` buckets are kept. A bucket that has
 * refilled completely is the same as no bucket and is dropped when room is
 * needed; if every bucket is still in use, the least recently used is dropped (which can
 * only make the limit more lenient for that one key, never stricter).
 */
export interface RateLimit {
  /** Attempts allowed at once (the bucket size), and per window on average. */
  readonly connections: number;
  /** The window over which `connections` tokens come back, ms. */
  readonly windowMs: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Buckets kept at most. */
export const MAX_RATE_KEYS = 10_000;

export class RateLimiter {
  readonly #limit: RateLimit;
  readonly #now: () => number;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(limit: RateLimit, now: () => number, maxKeys = MAX_RATE_KEYS) {
    this.#limit = limit;
    this.#now = now;
    this.#maxKeys = maxKeys;
  }

  /** Buckets held (for tests and metrics). */
  get size(): number {
    return this.#buckets.size;
  }

  /** Takes a token for `key`: true when the attempt is within the limit. */
  take(key: string): boolean {
    const { connections, windowMs } = this.#limit;
    if (connections === Infinity) return true;
    const now = this.#now();
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      this.#makeRoom(now);
      bucket = { tokens: connections, at: now };
      this.#buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(connections, bucket.tokens + ((now - bucket.at) * connections) / windowMs);
      bucket.at = now;
      // Most recently used last: the map is in order of use.
      this.#buckets.delete(key);
      this.#buckets.set(key, bucket);
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  #makeRoom(now: number): void {
    if (this.#buckets.size < this.#maxKeys) return;
    const { windowMs } = this.#limit;
    // A bucket untouched for a whole window is full again: forgetting it
    // changes nothing. The map is in order of use, so they come first.
    for (const [key, bucket] of this.#buckets) {
      if (now - bucket.at < windowMs) break;
      this.#buckets.delete(key);
    }
    if (this.#buckets.size >= this.#maxKeys) {
      const oldest = this.#buckets.keys().next();
      if (oldest.done !== true) this.#buckets.delete(oldest.value);
    }
  }
}
