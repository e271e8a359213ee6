import { checkFunction, checkNumber, invalidType } from '../protocol/arguments.js';
import type { Clock, Random } from '../protocol/time.js';

/** Largest delay Node's setTimeout honours; longer ones would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The wall clock. The only place in peerline that calls the host's timers;
 * everything else takes a `Clock` (undici routes its timers through one
 * module for the same reason: one place to replace in tests).
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout(fn: () => void, ms: number): unknown {
    // As the host's setTimeout: a bad callback throws, a bad delay (NaN, negative) means now.
    checkFunction('fn', fn);
    if (typeof ms !== 'number') throw invalidType('ms', 'a number', ms);
    if (ms === Infinity) return undefined;
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    if (delay <= MAX_TIMER_MS) {
      const timer = setTimeout(fn, delay);
      timer.unref?.();
      return timer;
    }
    // Chain for very long delays, keeping one handle that clears the chain.
    const handle: { timer?: ReturnType<typeof setTimeout> } = {};
    const deadline = performance.now() + delay;
    const arm = (): void => {
      const left = deadline - performance.now();
      handle.timer = setTimeout(left > MAX_TIMER_MS ? arm : fn, Math.min(left, MAX_TIMER_MS));
      handle.timer.unref?.();
    };
    arm();
    return handle;
  },
  clearTimeout(handle: unknown): void {
    if (handle === undefined || handle === null) return;
    if (typeof handle === 'object' && 'timer' in handle) {
      clearTimeout((handle as { timer?: ReturnType<typeof setTimeout> }).timer);
      return;
    }
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

/** A small seeded generator (mulberry32): the same seed gives the same sequence. */
export function seededRandom(seed: number): Random {
  checkNumber('seed', seed);
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
