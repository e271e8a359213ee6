import { strict as assert } from 'node:assert';
import { backoffDelay, maxAttempts, RETRY_DEFAULTS, seededRandom } from '../../runtime/index.js';
import { validateRetryPolicy } from '../../runtime/retry.js';

describe('retry policies', () => {
  const mid = (): number => 0.5; // no jitter effect: 1 + j * (2 * 0.5 - 1) = 1

  it('exponential: 1 s start, x1.6, capped at 120 s by default', () => {
    const policy = { strategy: 'exponential' } as const;
    assert.deepEqual(
      [1, 2, 3, 4].map((n) => backoffDelay(policy, n, mid)),
      [1000, 1600, 2560, 4096],
    );
    assert.equal(backoffDelay(policy, 50, mid), 120_000);
  });

  it('exponential jitter stays within +-20 % and follows the random source', () => {
    const policy = { strategy: 'exponential' } as const;
    assert.equal(backoffDelay(policy, 1, () => 0), 800);
    assert.equal(backoffDelay(policy, 1, () => 0.999999), 1200);
    const a = seededRandom(3);
    const b = seededRandom(3);
    const first = [1, 2, 3, 4, 5].map((n) => backoffDelay(policy, n, a));
    const second = [1, 2, 3, 4, 5].map((n) => backoffDelay(policy, n, b));
    assert.deepEqual(first, second);
  });

  it('fibonacci and fixed sequences', () => {
    const fib = { strategy: 'fibonacci', initialDelayMs: 100, jitter: 0 } as const;
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map((n) => backoffDelay(fib, n, mid)),
      [100, 100, 200, 300, 500, 800],
    );
    const fixed = { strategy: 'fixed', delayMs: 250 } as const;
    assert.deepEqual(
      [1, 2, 9].map((n) => backoffDelay(fixed, n, mid)),
      [250, 250, 250],
    );
  });

  it('max attempts: none allows one, strategies default to five', () => {
    assert.equal(maxAttempts({ strategy: 'none' }), 1);
    assert.equal(maxAttempts({ strategy: 'fixed' }), RETRY_DEFAULTS.maxAttempts);
    assert.equal(maxAttempts({ strategy: 'exponential', maxAttempts: 9 }), 9);
  });

  it('rejects bad policies naming the field', () => {
    assert.throws(() => validateRetryPolicy({ strategy: 'exponential', multiplier: 0.5 }, 'retry'), /retry\.multiplier/);
    assert.throws(() => validateRetryPolicy({ strategy: 'fixed', jitter: 2 }, 'retry'), /retry\.jitter/);
    assert.throws(() => validateRetryPolicy({ strategy: 'fixed', maxAttempts: 0 }, 'retry'), /retry\.maxAttempts/);
    assert.throws(() => validateRetryPolicy({ strategy: 'sometimes' } as never, 'retry'), /retry\.strategy/);
  });
});
