/**
 * Time and randomness, injected: every timer in peerline goes through a
 * `Clock` and every jitter draws from a `Random`, so a whole multi-peer
 * scenario on the memory network is deterministic for a seed. The host's
 * timers are called only where `runtime/clock.ts` wraps them (see
 * docs/ARCHITECTURE.md, "Time and randomness").
 */

/** Timers. Every timer in peerline goes through one of these. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** A source of numbers in [0, 1). Jitter draws from it and nothing else does. */
export type Random = () => number;
