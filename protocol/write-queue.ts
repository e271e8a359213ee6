/**
 * What a stream's writable needs so that `close()` works whoever holds the
 * stream, even while a writer holds the writable (shared by the memory and
 * the QUIC streams).
 *
 * WritableStream's own `close()` needs the writable unlocked. With a writer
 * holding it, the stream instead counts the chunks handed to `write()` (the
 * queuing strategy's `size()` is called once per chunk, as it is queued) and
 * the chunks its sink has finished; `close()` marks how many were queued
 * then, and the direction ends once the sink has finished that many: the
 * writes queued before the close go out, those after it fail.
 */
export class WriteQueue {
  /** Chunks handed to `write()` so far, and chunks the sink has finished. */
  #entered = 0;
  #processed = 0;
  /** Set by `close()` on a locked writable: end once this many chunks are done. */
  #closeAt: number | undefined = undefined;

  /** The writable's queuing strategy: one chunk at a time, each counted as it is queued. */
  readonly strategy: QueuingStrategy<Uint8Array> = {
    highWaterMark: 1,
    size: () => {
      this.#entered++;
      return 1;
    },
  };

  /** True once `close()` was asked for while a writer held the writable. */
  get closing(): boolean {
    return this.#closeAt !== undefined;
  }

  /** Every chunk queued before the close is done: the direction may end now, and a chunk the sink gets now came after the close. */
  get due(): boolean {
    return this.#closeAt !== undefined && this.#processed >= this.#closeAt;
  }

  /** Closes `writable`: at once (after its queue) when nobody holds it, else after the chunks queued so far (see `due`). */
  close(writable: WritableStream<Uint8Array>): void {
    if (!writable.locked) writable.close().catch(noop);
    else this.#closeAt = this.#entered;
  }

  /** The sink finished a chunk (written or failed). */
  processed(): void {
    this.#processed++;
  }
}

function noop(): void {}
