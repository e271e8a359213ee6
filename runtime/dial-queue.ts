import { checkFunction, checkNumber, COUNT } from '../protocol/arguments.js';

/**
 * Dial concurrency: at most `concurrency` dials at once, the rest wait in a
 * bounded FIFO (Zebra dials up to 50 at once; libp2p runs 100 in parallel
 * with a queue of 500). Past the queue bound a waiter is refused at once, so
 * memory stays bounded however many peers are asked for.
 *
 * Invariant: active <= concurrency, waiting <= limit, and a waiter is either
 * waiting, active, or gone: release() is idempotent. Every operation is O(1)
 * amortised: a waiter that leaves the queue is only marked, and skipped when
 * it reaches the head.
 */
interface Waiter {
  state: 'waiting' | 'active' | 'done';
  readonly grant: () => void;
}

export class DialQueue {
  readonly concurrency: number;
  readonly limit: number;
  #active = 0;
  #waiting = 0;
  #queue: Waiter[] = [];
  #head = 0;
  #closed = false;

  constructor(concurrency: number, limit: number) {
    checkNumber('concurrency', concurrency, COUNT);
    checkNumber('limit', limit, { min: 0, integer: true, infinity: true });
    this.concurrency = concurrency;
    this.limit = limit;
  }

  /** Grants nothing from now on (the engine is stopping); waiters wait until they leave. */
  close(): void {
    this.#closed = true;
  }

  get active(): number {
    return this.#active;
  }

  get waiting(): number {
    return this.#waiting;
  }

  /**
   * Asks for a slot. `granted` runs (now or later) when it is ours; `refused`
   * runs now if the queue is full. Returns the release function: it frees the
   * slot, or leaves the queue if the slot was not granted yet.
   */
  acquire(granted: () => void, refused: () => void): () => void {
    checkFunction('granted', granted);
    checkFunction('refused', refused);
    const waiter: Waiter = { state: 'waiting', grant: granted };
    if (this.#closed) {
      this.#queue.push(waiter);
      this.#waiting += 1;
    } else if (this.#active < this.concurrency) {
      this.#grant(waiter);
    } else if (this.#waiting >= this.limit) {
      waiter.state = 'done';
      refused();
    } else {
      this.#queue.push(waiter);
      this.#waiting += 1;
    }
    return () => {
      if (waiter.state === 'waiting') this.#waiting -= 1;
      if (waiter.state === 'active') {
        this.#active -= 1;
        waiter.state = 'done';
        this.#next();
      }
      waiter.state = 'done';
    };
  }

  #grant(waiter: Waiter): void {
    waiter.state = 'active';
    this.#active += 1;
    waiter.grant();
  }

  #next(): void {
    while (!this.#closed && this.#active < this.concurrency && this.#head < this.#queue.length) {
      const waiter = this.#queue[this.#head++]!;
      if (waiter.state !== 'waiting') continue;
      this.#waiting -= 1;
      this.#grant(waiter);
    }
    // Drop the consumed prefix now and then, so the array does not grow forever.
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    }
  }
}
