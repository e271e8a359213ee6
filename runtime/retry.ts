import { checkFunction, checkNumber, checkObject, checkOneOf, checkOptionalNumber, NON_NEGATIVE } from '../protocol/arguments.js';
import type { Random } from '../protocol/time.js';
import { TIMING_DEFAULTS } from '../protocol/timing.js';

/**
 * Retry policies (distant offers exponential, Fibonacci, fixed and fail; gRPC's
 * connection backoff is 1 s start, x1.6, +-20 % jitter, 120 s cap). The
 * machine counts attempts; the policy only says how long to wait before the
 * next one. After the last allowed attempt fails the machine closes at once:
 * there is no sleep after the last failure (distant sleeps once more; we don't).
 */
export type RetryPolicy =
  | { readonly strategy: 'none' }
  | { readonly strategy: 'fixed'; readonly delayMs?: number; readonly jitter?: number; readonly maxAttempts?: number }
  | {
      readonly strategy: 'exponential';
      readonly initialDelayMs?: number;
      readonly multiplier?: number;
      readonly maxDelayMs?: number;
      readonly jitter?: number;
      readonly maxAttempts?: number;
    }
  | {
      readonly strategy: 'fibonacci';
      readonly initialDelayMs?: number;
      readonly maxDelayMs?: number;
      readonly jitter?: number;
      readonly maxAttempts?: number;
    };

export const RETRY_DEFAULTS = {
  initialDelayMs: TIMING_DEFAULTS.backoffInitialMs,
  multiplier: 1.6,
  maxDelayMs: 120_000,
  jitter: 0.2,
  /** For a strategy other than `none` when no count is given. Pinned peers never stop unless their policy gives one. */
  maxAttempts: 5,
} as const;

/** Total dial attempts the policy allows, the first one included. */
export function maxAttempts(policy: RetryPolicy): number {
  checkObject('policy', policy);
  if (policy.strategy === 'none') return 1;
  return policy.maxAttempts ?? RETRY_DEFAULTS.maxAttempts;
}

/** Consecutive failed attempts after which a pinned peer gives up: the policy's `maxAttempts`, or never. */
export function pinnedMaxAttempts(policy: RetryPolicy): number {
  if (policy.strategy === 'none') return 1;
  return policy.maxAttempts ?? Infinity;
}

/** The delay before the next attempt, after `failures` consecutive failures (1 or more). */
export function backoffDelay(policy: RetryPolicy, failures: number, random: Random): number {
  checkObject('policy', policy);
  checkNumber('failures', failures, NON_NEGATIVE);
  checkFunction('random', random);
  const n = Math.max(1, Math.floor(failures));
  let base: number;
  let jitter: number;
  let cap: number;
  switch (policy.strategy) {
    case 'none':
      return 0;
    case 'fixed':
      base = policy.delayMs ?? RETRY_DEFAULTS.initialDelayMs;
      jitter = policy.jitter ?? 0;
      cap = Infinity;
      break;
    case 'exponential': {
      const initial = policy.initialDelayMs ?? RETRY_DEFAULTS.initialDelayMs;
      const multiplier = policy.multiplier ?? RETRY_DEFAULTS.multiplier;
      cap = policy.maxDelayMs ?? RETRY_DEFAULTS.maxDelayMs;
      base = Math.min(cap, initial * multiplier ** (n - 1));
      jitter = policy.jitter ?? RETRY_DEFAULTS.jitter;
      break;
    }
    case 'fibonacci': {
      const initial = policy.initialDelayMs ?? RETRY_DEFAULTS.initialDelayMs;
      cap = policy.maxDelayMs ?? RETRY_DEFAULTS.maxDelayMs;
      let a = 1;
      let b = 1;
      for (let i = 1; i < n; i++) [a, b] = [b, a + b];
      base = Math.min(cap, initial * a);
      jitter = policy.jitter ?? RETRY_DEFAULTS.jitter;
      break;
    }
  }
  const spread = jitter > 0 ? 1 + jitter * (2 * random() - 1) : 1;
  return Math.max(0, Math.round(base * spread));
}

/** Throws a TypeError or RangeError naming the bad field. */
export function validateRetryPolicy(policy: RetryPolicy, name: string): void {
  checkObject(name, policy);
  checkOneOf(`${name}.strategy`, policy.strategy, ['none', 'fixed', 'exponential', 'fibonacci']);
  const fields = policy as Record<string, unknown>;
  for (const key of ['delayMs', 'initialDelayMs', 'maxDelayMs']) checkOptionalNumber(`${name}.${key}`, fields[key], NON_NEGATIVE);
  checkOptionalNumber(`${name}.multiplier`, fields.multiplier, { min: 1 });
  checkOptionalNumber(`${name}.jitter`, fields.jitter, { min: 0, max: 1 });
  checkOptionalNumber(`${name}.maxAttempts`, fields.maxAttempts, { min: 1, integer: true, infinity: true });
}
