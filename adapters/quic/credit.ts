/**
 * Stream credit: QUIC lets the remote bound how many streams we may open
 * (the remote's `initial_max_streams_bidi`, raised by its MAX_STREAMS frames
 * as streams end), and @matrixai/quic's `newStream()` throws past it, after
 * which that connection cannot open any stream again (the failed stream id
 * stays marked as used). So an open first checks the credit left; without
 * credit it waits, in order and bounded (count, and the caller's signal),
 * until the remote's MAX_STREAMS frame arrives. How streams end so that the
 * remote gives credit back at all is in `wire.ts`.
 */
import type { StreamTransport } from './seam/index.js';

/** Opens that may wait for stream credit at once, per connection; more fail with kind `stream-limit`. */
export const MAX_WAITING_OPENS = 4096;
/** How often waiting opens re-check the credit when no packet arrives (credit comes in a packet, which is the main cue). */
const CREDIT_POLL_MS = 5;

/** One open waiting for credit. */
export interface CreditWaiter {
  start(): void;
}

export class CreditQueue<T extends CreditWaiter> {
  readonly #transport: StreamTransport;
  readonly #waiters: T[] = [];
  #unsubscribe: (() => void) | undefined;
  #poll: ReturnType<typeof setInterval> | undefined;
  #kickQueued = false;
  #closed = false;

  constructor(transport: StreamTransport) {
    this.#transport = transport;
  }

  /** Opens waiting for credit. */
  get length(): number {
    return this.#waiters.length;
  }

  /** True when `waiter` may start now (credit, and nobody waiting ahead). */
  canStart(): boolean {
    return this.#waiters.length === 0 && this.#transport.creditLeft() > 0;
  }

  /** Queues `waiter`; false when the queue is full. */
  wait(waiter: T): boolean {
    if (this.#waiters.length >= MAX_WAITING_OPENS) return false;
    this.#waiters.push(waiter);
    this.#arm();
    return true;
  }

  /** Forgets `waiter` (it settled while waiting). */
  remove(waiter: T): void {
    const index = this.#waiters.indexOf(waiter);
    if (index >= 0) this.#waiters.splice(index, 1);
    if (this.#waiters.length === 0) this.#disarm();
  }

  /** The connection ended: nobody waits any more (the caller fails them). */
  close(): void {
    this.#closed = true;
    this.#waiters.length = 0;
    this.#disarm();
  }

  #arm(): void {
    // Credit comes back in a MAX_STREAMS frame: every received packet is the cue to look again.
    this.#unsubscribe ??= this.#transport.onReceive(this.#onReceive);
    this.#poll ??= setInterval(() => this.#kick(), CREDIT_POLL_MS);
  }

  #disarm(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    if (this.#poll !== undefined) clearInterval(this.#poll);
    this.#poll = undefined;
  }

  readonly #onReceive = (): void => {
    if (this.#kickQueued) return;
    this.#kickQueued = true;
    // Not from inside the library's receive: opening writes.
    queueMicrotask(() => {
      this.#kickQueued = false;
      this.#kick();
    });
  };

  #kick(): void {
    while (this.#waiters.length > 0 && !this.#closed && this.#transport.creditLeft() > 0) {
      this.#waiters.shift()!.start();
    }
    if (this.#waiters.length === 0) this.#disarm();
  }
}
