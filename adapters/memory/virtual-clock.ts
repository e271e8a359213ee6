import type { Clock } from '../../protocol/time.js';
import { checkFunction, checkNumber, invalidType, NON_NEGATIVE } from '../../protocol/arguments.js';

/** A timer, and its handle. `fn` is dropped once it fired or was cleared, freeing what it holds at once. */
class Timer {
  readonly id: number;
  readonly at: number;
  fn: (() => void) | undefined;

  constructor(id: number, at: number, fn: () => void) {
    this.id = id;
    this.at = at;
    this.fn = fn;
  }
}

/** Resolves after every queued microtask (promise callbacks) has run. */
export function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A virtual clock: time moves only when a test or simulation advances it.
 * Timers due at the same instant fire in the order they were set, so a run is
 * deterministic for a given sequence of calls. They fire in rounds, like the
 * events one turn of a real event loop finds ready: a round fires the timers
 * due at one instant that were set before it began, then pending promise
 * callbacks run, then the next round starts (see `advance`). A busy network
 * delivers a whole burst of messages per round instead of one per turn.
 *
 * Invariant: `heap` holds every live timer, ordered by (at, id), and cleared
 * ones (without their callback) until they surface or are compacted away;
 * `live` counts the live ones.
 */
export class VirtualClock implements Clock {
  #now: number;
  #nextId = 1;
  #heap: Timer[] = [];
  #live = 0;

  constructor(startAt = 0) {
    checkNumber('startAt', startAt);
    this.#now = startAt;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    // As the host's setTimeout: a bad callback throws, a bad delay (NaN, negative) means now.
    checkFunction('fn', fn);
    if (typeof ms !== 'number') throw invalidType('ms', 'a number', ms);
    // An infinite delay never fires (a disabled timer); NaN and negatives fire now.
    if (ms === Infinity) return 0;
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    const timer = new Timer(this.#nextId++, this.#now + delay, fn);
    this.#live += 1;
    this.#push(timer);
    // Cleared timers stay in the heap until they surface; rebuild when they dominate.
    if (this.#heap.length > 1024 && this.#heap.length > 4 * this.#live) this.#compact();
    return timer;
  }

  clearTimeout(handle: unknown): void {
    if (handle instanceof Timer && handle.fn !== undefined) {
      handle.fn = undefined;
      this.#live -= 1;
    }
  }

  /** Number of timers still pending. */
  pending(): number {
    return this.#live;
  }

  /** Time of the next pending timer, or undefined. */
  nextAt(): number | undefined {
    this.#dropDead();
    return this.#heap[0]?.at;
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due, in order.
   * Timers fire in rounds: one round fires, in the order they were set, the
   * timers due at the earliest instant that were set before the round began;
   * then pending promise callbacks run, as after one turn of a real event
   * loop that found several events ready. Timers set during a round (a
   * delivery answered at latency 0) fire in a later round, after those
   * callbacks. Timers set while advancing fire too if they fall due within
   * the window.
   */
  async advance(ms: number): Promise<void> {
    checkNumber('ms', ms, NON_NEGATIVE);
    const target = this.#now + ms;
    await flushMicrotasks();
    for (;;) {
      this.#dropDead();
      const first = this.#heap[0];
      if (first === undefined || first.at > target) break;
      this.#fireRound(first.at);
      await flushMicrotasks();
    }
    this.#now = target;
    await flushMicrotasks();
  }

  /** Fires the live timers due at `at` that exist now, in (at, id) order. */
  #fireRound(at: number): void {
    this.#now = at;
    const end = this.#nextId;
    for (;;) {
      // Read the heap anew each time: a callback that sets a timer may compact it into a new array.
      const next = this.#heap[0];
      if (next === undefined || next.at !== at || next.id >= end) break;
      this.#pop();
      const fn = next.fn;
      // Cleared by a timer of this round: it does not fire.
      if (fn === undefined) continue;
      next.fn = undefined;
      this.#live -= 1;
      fn();
    }
  }

  /** Advances to the next pending timer and fires it (and any due with it). */
  async next(): Promise<boolean> {
    const at = this.nextAt();
    if (at === undefined) return false;
    await this.advance(at - this.#now);
    return true;
  }

  /**
   * Fires timers until none is left or `limitMs` of virtual time has passed.
   * Bounded by design: periodic timers (heartbeats) never run dry.
   */
  async runAll(limitMs: number): Promise<void> {
    checkNumber('limitMs', limitMs, NON_NEGATIVE);
    const end = this.#now + limitMs;
    for (;;) {
      const at = this.nextAt();
      if (at === undefined || at > end) break;
      await this.advance(at - this.#now);
    }
  }

  #compact(): void {
    const live = this.#heap.filter((t) => t.fn !== undefined);
    this.#heap = [];
    for (const timer of live) this.#push(timer);
  }

  #dropDead(): void {
    while (this.#heap.length > 0 && this.#heap[0]!.fn === undefined) this.#pop();
  }

  #less(a: Timer, b: Timer): boolean {
    return a.at < b.at || (a.at === b.at && a.id < b.id);
  }

  #push(timer: Timer): void {
    const heap = this.#heap;
    heap.push(timer);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#less(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  #pop(): Timer | undefined {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last !== undefined) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && this.#less(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && this.#less(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return top;
  }
}
