/**
 * Dial concurrency: at most `concurrency` dials at once, the rest wait in a
 * bounded FIFO (Zebra dials up to 50 at once; libp2p runs 100 in parallel
 * with a queue of 500). Past the queue bound a waiter is refused at once, so
 * memory stays bounded however many peers are asked for.
 *
 * Invariant: active <= concurrency, waiting.size <= limit, and a waiter is
 * either waiting, active, or gone: release() is idempotent.
 */
export class DialQueue {
  readonly concurrency: number;
  readonly limit: number;
  #active = 0;
  #waiting = new Map<number, () => void>();
  #nextId = 1;

  constructor(concurrency: number, limit: number) {
    this.concurrency = concurrency;
    this.limit = limit;
  }

  get active(): number {
    return this.#active;
  }

  get waiting(): number {
    return this.#waiting.size;
  }

  /**
   * Asks for a slot. `granted` runs (now or later) when it is ours; `refused`
   * runs now if the queue is full. Returns the release function: it frees the
   * slot, or leaves the queue if the slot was not granted yet.
   */
  acquire(granted: () => void, refused: () => void): () => void {
    const id = this.#nextId++;
    let state: 'waiting' | 'active' | 'done' = 'waiting';
    const grant = (): void => {
      state = 'active';
      this.#active += 1;
      granted();
    };
    if (this.#active < this.concurrency) {
      grant();
    } else if (this.#waiting.size >= this.limit) {
      state = 'done';
      refused();
    } else {
      this.#waiting.set(id, grant);
    }
    return () => {
      if (state === 'waiting') this.#waiting.delete(id);
      if (state === 'active') {
        this.#active -= 1;
        this.#next();
      }
      state = 'done';
    };
  }

  #next(): void {
    while (this.#active < this.concurrency && this.#waiting.size > 0) {
      const [id, grant] = this.#waiting.entries().next().value as [number, () => void];
      this.#waiting.delete(id);
      grant();
    }
  }
}
