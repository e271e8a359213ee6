/**
 * `engine.state$(peerId)` and `engine.peers$`: the state of one peer's
 * machine, and of every peer's, as observables with BehaviorSubject
 * semantics (a late subscriber gets the current value at once). They cost
 * nothing while nobody subscribes, and hold nothing for a peer nobody
 * watches: subscribers are kept per peer only while subscribed.
 */
import { Observable, type Subscriber } from 'rxjs';
import type { ConnectionState } from '../machines/types.js';

/** What the engine tells it. */
export interface PeerStatesHost {
  /** The peer's current top-level state, or undefined when it has no machine. */
  stateOf(peerId: string): ConnectionState | undefined;
  /** Every peer with a machine, and its state. */
  states(): Iterable<readonly [string, ConnectionState]>;
}

export class PeerStates {
  readonly peers$: Observable<ReadonlyMap<string, ConnectionState>>;
  readonly #host: PeerStatesHost;
  readonly #byPeer = new Map<string, Set<Subscriber<ConnectionState>>>();
  readonly #all = new Set<Subscriber<ReadonlyMap<string, ConnectionState>>>();
  #emitQueued = false;
  #completed = false;

  constructor(host: PeerStatesHost) {
    this.#host = host;
    this.peers$ = new Observable<ReadonlyMap<string, ConnectionState>>((subscriber) => {
      if (this.#completed) {
        subscriber.complete();
        return undefined;
      }
      this.#all.add(subscriber);
      subscriber.next(this.#current());
      return () => {
        this.#all.delete(subscriber);
      };
    });
  }

  /** Peers with at least one `state$` subscriber (for tests: nothing is kept for the others). */
  get watchedPeers(): number {
    return this.#byPeer.size;
  }

  /**
   * The state of `peerId`'s machine: the current one at once (if it has a
   * machine), then every change; completes when that machine ends (after its
   * final state) or the engine stops. Subscribed while the peer has no
   * machine, it waits for the next one.
   */
  state$(peerId: string): Observable<ConnectionState> {
    return new Observable<ConnectionState>((subscriber) => {
      if (this.#completed) {
        subscriber.complete();
        return undefined;
      }
      let set = this.#byPeer.get(peerId);
      if (set === undefined) {
        set = new Set();
        this.#byPeer.set(peerId, set);
      }
      set.add(subscriber);
      const current = this.#host.stateOf(peerId);
      if (current !== undefined) subscriber.next(current);
      return () => {
        const own = this.#byPeer.get(peerId);
        if (own === undefined) return;
        own.delete(subscriber);
        if (own.size === 0) this.#byPeer.delete(peerId);
      };
    });
  }

  /** The peer's machine entered `to`. */
  changed(peerId: string, to: ConnectionState): void {
    const set = this.#byPeer.get(peerId);
    if (set !== undefined) for (const subscriber of [...set]) subscriber.next(to);
    this.#queueAll();
  }

  /** The peer's machine ended (its record left the registry). */
  ended(peerId: string): void {
    const set = this.#byPeer.get(peerId);
    if (set !== undefined) {
      this.#byPeer.delete(peerId);
      for (const subscriber of [...set]) subscriber.complete();
    }
    this.#queueAll();
  }

  /** The engine stopped: every subscriber completes, later ones complete at once. */
  complete(): void {
    this.#completed = true;
    const peers = [...this.#byPeer.values()];
    this.#byPeer.clear();
    for (const set of peers) for (const subscriber of set) subscriber.complete();
    const all = [...this.#all];
    this.#all.clear();
    for (const subscriber of all) subscriber.complete();
  }

  /** Changes within one turn are sent to `peers$` once, after it: a storm of transitions costs one map per turn. */
  #queueAll(): void {
    if (this.#all.size === 0 || this.#emitQueued) return;
    this.#emitQueued = true;
    queueMicrotask(() => {
      this.#emitQueued = false;
      if (this.#all.size === 0) return;
      const value = this.#current();
      for (const subscriber of [...this.#all]) subscriber.next(value);
    });
  }

  #current(): ReadonlyMap<string, ConnectionState> {
    return new Map(this.#host.states());
  }
}
