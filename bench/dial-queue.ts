/**
 * Dial queue scaling: cost per waiter of `DialQueue` when many dials wait
 * (dialQueueLimit raised, e.g. Infinity, and a burst of peers to connect).
 *
 * Until commit ed615c2 the queue kept its waiters in a Map and took the
 * oldest with `waiting.entries().next()`. V8 leaves a hole for every deleted
 * Map entry until the table is rebuilt, and iteration walks the holes, so
 * draining a long queue was quadratic (15.9 us per waiter at 100k waiters,
 * 4.8x the cost per waiter at 10k). It now keeps an array with a head index.
 * This benchmark shows the cost per waiter at growing sizes next to a plain
 * array queue, so a regression shows as a cost per waiter that grows.
 *
 *   npx tsx bench/dial-queue.ts [--max 100000]
 */
import { fileURLToPath } from 'node:url';
import { DialQueue } from '../runtime/dial-queue.js';
import { RESULT_PREFIX, int, msSince, numberArg, say } from './common.js';

export interface DialQueueRow {
  readonly waiters: number;
  readonly ms: number;
  readonly nsPerWaiter: number;
  readonly arrayMs: number;
}

/** `waiters` dials queue behind `concurrency` slots; then every slot is released in order, granting the next. */
function drainDialQueue(waiters: number, concurrency = 50): number {
  const queue = new DialQueue(concurrency, Infinity);
  const releases: Array<() => void> = [];
  let granted = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < waiters; i++) releases.push(queue.acquire(() => void (granted += 1), () => {}));
  for (let i = 0; i < waiters; i++) releases[i]!();
  const ms = msSince(start);
  if (granted !== waiters || queue.active !== 0 || queue.waiting !== 0) throw new Error('dial queue lost a waiter');
  return ms;
}

/** The same pattern on an array with a head index: the reference for linear cost. */
function drainArray(waiters: number): number {
  const queue: Array<(() => void) | undefined> = [];
  let head = 0;
  let granted = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < waiters; i++) queue.push(() => void (granted += 1));
  while (head < queue.length) {
    const next = queue[head];
    queue[head++] = undefined;
    next?.();
  }
  const ms = msSince(start);
  if (granted !== waiters) throw new Error('array queue lost a waiter');
  return ms;
}

export function dialQueueBench(max: number): DialQueueRow[] {
  say('dial queue: N dials wait behind 50 slots, then drain in order (dialQueueLimit Infinity)');
  drainDialQueue(5_000);
  drainArray(5_000);
  const rows: DialQueueRow[] = [];
  for (const waiters of [10_000, 25_000, 50_000, 100_000].filter((n) => n <= max)) {
    const ms = drainDialQueue(waiters);
    const arrayMs = drainArray(waiters);
    rows.push({ waiters, ms, nsPerWaiter: (ms * 1e6) / waiters, arrayMs });
    say(`  ${int(waiters).padStart(7)} waiters  ${ms.toFixed(0).padStart(6)} ms  ${int((ms * 1e6) / waiters).padStart(7)} ns/waiter   (array queue ${arrayMs.toFixed(1)} ms)`);
  }
  if (rows.length >= 2) {
    const first = rows[0]!;
    const last = rows[rows.length - 1]!;
    const growth = last.nsPerWaiter / first.nsPerWaiter;
    say(`  cost per waiter grew ${growth.toFixed(1)}x for ${last.waiters / first.waiters}x the waiters (linear would be ~1x)`);
  }
  return rows;
}

const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) {
  const rows = dialQueueBench(numberArg('max', 100_000));
  say(`${RESULT_PREFIX}${JSON.stringify({ bench: 'dial-queue', rows })}`);
}
