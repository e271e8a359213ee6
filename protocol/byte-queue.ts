/**
 * A FIFO of byte chunks read by exact counts, for the parsers that cut
 * frames out of a byte stream whatever its chunking: the QUIC adapter's
 * stream headers and control frames (`adapters/quic/wire.ts`) and the
 * resumable streams' frames (`runtime/resume/frames.ts`). A read that fits
 * in the first chunk is a view of it; only a read across chunks copies.
 */
export class ByteQueue {
  #chunks: Uint8Array[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** The first `n` bytes without removing them (n <= length). */
  peek(n: number): Uint8Array {
    const first = this.#chunks[0];
    if (first !== undefined && first.length >= n) return first.subarray(0, n);
    return this.#copy(n, false);
  }

  /** Removes and returns the first `n` bytes (n <= length). */
  take(n: number): Uint8Array {
    const first = this.#chunks[0];
    if (first !== undefined && first.length >= n) {
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      this.#length -= n;
      return first.subarray(0, n);
    }
    return this.#copy(n, true);
  }

  /** Removes the first `n` bytes (n <= length) as views of the chunks they are in: no copy. */
  takeParts(n: number): Uint8Array[] {
    if (n > this.#length) throw new RangeError(`${n} bytes asked, ${this.#length} held`);
    const parts: Uint8Array[] = [];
    let left = n;
    while (left > 0) {
      const chunk = this.#chunks[0]!;
      if (chunk.length <= left) {
        parts.push(chunk);
        this.#chunks.shift();
        left -= chunk.length;
      } else {
        parts.push(chunk.subarray(0, left));
        this.#chunks[0] = chunk.subarray(left);
        left = 0;
      }
    }
    this.#length -= n;
    return parts;
  }

  /** Removes and returns every chunk held. */
  drain(): Uint8Array[] {
    const chunks = this.#chunks;
    this.#chunks = [];
    this.#length = 0;
    return chunks;
  }

  #copy(n: number, consume: boolean): Uint8Array {
    if (n > this.#length) throw new RangeError(`${n} bytes asked, ${this.#length} held`);
    const out = new Uint8Array(n);
    let offset = 0;
    let index = 0;
    while (offset < n) {
      const chunk = this.#chunks[index]!;
      const part = Math.min(chunk.length, n - offset);
      out.set(chunk.subarray(0, part), offset);
      offset += part;
      if (consume) {
        if (part === chunk.length) {
          this.#chunks.shift();
        } else {
          this.#chunks[0] = chunk.subarray(part);
        }
      } else {
        index++;
      }
    }
    if (consume) this.#length -= n;
    return out;
  }
}
