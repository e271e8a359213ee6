/**
 * The peers that may be pruned at `maxConnections`, kept up to date as their
 * machines change state, so that choosing one costs the same with 100,000
 * peers as with ten (scanning the registry for the best one cost about 40 ms
 * per admission at 20,000 peers; see `bench/prune.ts`).
 *
 * Two kinds: a peer backing off (`errored`, not pinned, nobody waiting),
 * worth nothing and pruned first; and an idle `ready` peer (`ready.idle`,
 * which a pinned peer never reaches), bucketed by its priority (the sum of
 * its tags), each bucket in the order the peers became idle, so the head of
 * the lowest bucket is the least recently used of the lowest priority.
 * Protected peers are tracked but in no bucket.
 *
 * The lists are linked through the peers' places, not Sets taken from the
 * front: a Set (or Map) used as a FIFO keeps a hole per deleted entry that
 * iteration walks until the table is rebuilt (the dial queue measured it,
 * docs/PERFORMANCE.md section 3).
 *
 * Invariant: a peer has a place iff it is prunable by kind; a place is in
 * exactly one list (the backing-off list, or its priority's bucket) unless
 * it is an idle protected peer; lists are never empty in `#buckets`.
 */

export type PrunableKind = 'idle' | 'errored';

/** A peer's pruning priority, as the engine keeps it. */
export interface Priority {
  readonly value: number;
  readonly protected: boolean;
}

interface Place<E> {
  readonly kind: PrunableKind;
  /** Order of becoming prunable: the lower, the longer ago. */
  readonly seq: number;
  /** The list it is in; undefined for an idle protected peer. */
  list: List<E> | undefined;
  /** Its priority's bucket key (idle peers in a bucket). */
  bucket: number | undefined;
  prev: E | undefined;
  next: E | undefined;
}

interface List<E> {
  head: E | undefined;
  tail: E | undefined;
}

export class PruneIndex<E extends { readonly peerId: string }> {
  readonly #priorityOf: (peerId: string) => Priority | undefined;
  readonly #backingOff: List<E> = { head: undefined, tail: undefined };
  readonly #buckets = new Map<number, List<E>>();
  readonly #places = new Map<E, Place<E>>();
  #seq = 0;

  constructor(priorityOf: (peerId: string) => Priority | undefined) {
    this.#priorityOf = priorityOf;
  }

  /** Peers tracked (for tests). */
  get size(): number {
    return this.#places.size;
  }

  /** The peer's machine reached a state of `kind` (undefined: not prunable). O(1) when nothing changed. */
  update(entry: E, kind: PrunableKind | undefined): void {
    const place = this.#places.get(entry);
    if (place?.kind === kind) return;
    if (place !== undefined) this.#take(entry, place);
    if (kind === undefined) return;
    const next: Place<E> = { kind, seq: ++this.#seq, list: undefined, bucket: undefined, prev: undefined, next: undefined };
    this.#places.set(entry, next);
    if (kind === 'errored') this.#link(this.#backingOff, entry, next);
    else this.#bucket(entry, next);
  }

  /** The peer's priority or protection changed: an idle one moves, keeping its place in time. */
  refresh(entry: E): void {
    const place = this.#places.get(entry);
    if (place === undefined || place.kind !== 'idle') return;
    this.#unlink(entry, place);
    this.#bucket(entry, place);
  }

  remove(entry: E): void {
    const place = this.#places.get(entry);
    if (place !== undefined) this.#take(entry, place);
  }

  /** The peer to prune: one backing off first, else the oldest idle one of the lowest priority. */
  pick(): E | undefined {
    if (this.#backingOff.head !== undefined) return this.#backingOff.head;
    let lowest: number | undefined;
    for (const priority of this.#buckets.keys()) if (lowest === undefined || priority < lowest) lowest = priority;
    return lowest === undefined ? undefined : this.#buckets.get(lowest)!.head;
  }

  #take(entry: E, place: Place<E>): void {
    this.#places.delete(entry);
    this.#unlink(entry, place);
  }

  #bucket(entry: E, place: Place<E>): void {
    const priority = this.#priorityOf(entry.peerId);
    if (priority?.protected === true) return;
    const value = priority?.value ?? 0;
    let list = this.#buckets.get(value);
    if (list === undefined) {
      list = { head: undefined, tail: undefined };
      this.#buckets.set(value, list);
    }
    place.bucket = value;
    this.#link(list, entry, place);
  }

  /** Inserts in `seq` order: at the tail, but for a peer whose priority changed (it goes back to its place in time). */
  #link(list: List<E>, entry: E, place: Place<E>): void {
    let after = list.tail;
    while (after !== undefined && this.#places.get(after)!.seq > place.seq) after = this.#places.get(after)!.prev;
    const before = after === undefined ? list.head : this.#places.get(after)!.next;
    place.list = list;
    place.prev = after;
    place.next = before;
    if (after === undefined) list.head = entry;
    else this.#places.get(after)!.next = entry;
    if (before === undefined) list.tail = entry;
    else this.#places.get(before)!.prev = entry;
  }

  #unlink(entry: E, place: Place<E>): void {
    const list = place.list;
    if (list === undefined) return;
    const { prev, next } = place;
    if (prev === undefined) list.head = next;
    else this.#places.get(prev)!.next = next;
    if (next === undefined) list.tail = prev;
    else this.#places.get(next)!.prev = prev;
    place.list = undefined;
    place.prev = undefined;
    place.next = undefined;
    if (place.bucket !== undefined && list.head === undefined) this.#buckets.delete(place.bucket);
    place.bucket = undefined;
  }
}
