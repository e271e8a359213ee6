/**
 * Pruning at `maxConnections` and the priorities that order it: each peer's
 * tags (`tagPeer`, summed) and protection (`protectPeer`), kept per peer id
 * whether it is connected or not, and the index of the records that may be
 * pruned (`prune-index.ts`), kept up to date from the machines' microsteps.
 */
import type { Metrics } from './metrics.js';
import type { PeerRecord } from './peer-record.js';
import { PruneIndex, type Priority, type PrunableKind } from './prune-index.js';

/** A peer's tag values and protection. */
interface PeerPriority {
  readonly tags: Map<string, number>;
  protected: boolean;
}

/** Whether a machine in this state may be pruned, and how (see prune-index.ts). */
function prunableKind(value: unknown, context: { pinned: boolean; queue: readonly unknown[] }): PrunableKind | undefined {
  if (value === 'errored') return !context.pinned && context.queue.length === 0 ? 'errored' : undefined;
  if (typeof value === 'object' && value !== null && (value as { ready?: string }).ready === 'idle') return 'idle';
  return undefined;
}

export class Priorities {
  /** Only peers that have a tag or protection. */
  readonly #priorities = new Map<string, PeerPriority>();
  /** Records that may be pruned, kept as their machines change state. */
  readonly #prunable = new PruneIndex<PeerRecord>((peerId) => this.#value(peerId));
  readonly #metrics: Metrics;
  /** The peer's live record, if any: its place in the index follows its priority. */
  readonly #record: (peerId: string) => PeerRecord | undefined;

  constructor(metrics: Metrics, record: (peerId: string) => PeerRecord | undefined) {
    this.#metrics = metrics;
    this.#record = record;
  }

  tag(peerId: string, tag: string, value: number): void {
    this.#priorityOf(peerId).tags.set(tag, value);
    this.#refresh(peerId);
  }

  untag(peerId: string, tag: string): void {
    const priority = this.#priorities.get(peerId);
    if (priority === undefined) return;
    priority.tags.delete(tag);
    if (priority.tags.size === 0 && !priority.protected) this.#priorities.delete(peerId);
    this.#refresh(peerId);
  }

  protect(peerId: string, on: boolean): void {
    if (on) {
      this.#priorityOf(peerId).protected = true;
    } else {
      const priority = this.#priorities.get(peerId);
      if (priority === undefined) return;
      priority.protected = false;
      if (priority.tags.size === 0) this.#priorities.delete(peerId);
    }
    this.#refresh(peerId);
  }

  /** Forgets the peer's tags and protection (`removePeer`). */
  forget(peerId: string): void {
    this.#priorities.delete(peerId);
    this.#refresh(peerId);
  }

  /** A microstep of the record's machine: it may have become prunable, or stopped being so. */
  stepped(record: PeerRecord, value: unknown, context: { pinned: boolean; queue: readonly unknown[] }): void {
    this.#prunable.update(record, prunableKind(value, context));
  }

  /** The record left the registry. */
  removed(record: PeerRecord): void {
    this.#prunable.remove(record);
  }

  /**
   * Room for one more machine when `live` are running, at most `max`? At the
   * limit one peer is pruned to make room: a peer backing off (`errored`)
   * with nobody waiting for it first, else the idle `ready` peer with the
   * lowest priority (the sum of its tags), the one idle the longest (least
   * recently used) among equals. Pinned and protected peers never are.
   */
  makeRoom(live: number, max: number): boolean {
    if (live < max) return true;
    const victim = this.#prunable.pick();
    if (victim === undefined) return false;
    // Out of the index now: a second admission in the same step must not pick it again.
    this.#prunable.remove(victim);
    this.#metrics.pruned += 1;
    victim.actor.send({ type: 'PRUNE' });
    return true;
  }

  #refresh(peerId: string): void {
    const record = this.#record(peerId);
    if (record !== undefined) this.#prunable.refresh(record);
  }

  /** The sum of a peer's tags and its protection, for the prune index. */
  #value(peerId: string): Priority | undefined {
    const priority = this.#priorities.get(peerId);
    if (priority === undefined) return undefined;
    let value = 0;
    for (const v of priority.tags.values()) value += v;
    return { value, protected: priority.protected };
  }

  #priorityOf(peerId: string): PeerPriority {
    let priority = this.#priorities.get(peerId);
    if (priority === undefined) {
      priority = { tags: new Map(), protected: false };
      this.#priorities.set(peerId, priority);
    }
    return priority;
  }
}
