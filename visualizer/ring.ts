import { checkNumber, COUNT } from '../protocol/arguments.js';

/** A fixed-capacity buffer that keeps the newest items: memory stays bounded however long it runs. */
export class RingBuffer<T> {
  readonly capacity: number;
  readonly #items: (T | undefined)[];
  #start = 0;
  #size = 0;
  #dropped = 0;

  constructor(capacity: number) {
    checkNumber('capacity', capacity, COUNT);
    this.capacity = capacity;
    this.#items = new Array<T | undefined>(capacity);
  }

  /** Items held now (at most `capacity`). */
  get size(): number {
    return this.#size;
  }

  /** Items pushed out by newer ones since the buffer was made. */
  get dropped(): number {
    return this.#dropped;
  }

  push(item: T): void {
    if (this.#size < this.capacity) {
      this.#items[(this.#start + this.#size) % this.capacity] = item;
      this.#size += 1;
      return;
    }
    this.#items[this.#start] = item;
    this.#start = (this.#start + 1) % this.capacity;
    this.#dropped += 1;
  }

  /** Oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.#size; i++) out.push(this.#items[(this.#start + i) % this.capacity] as T);
    return out;
  }

  /** The newest item. */
  last(): T | undefined {
    return this.#size === 0 ? undefined : this.#items[(this.#start + this.#size - 1) % this.capacity];
  }

  clear(): void {
    this.#items.fill(undefined);
    this.#start = 0;
    this.#size = 0;
  }
}
