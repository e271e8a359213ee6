/**
 * Internal plumbing of the in-memory network: the view of the network that
 * connections and streams need, and the `Lane`, an ordered one-way channel on
 * the virtual clock. Not exported from the package.
 */
import type { Clock } from '../adapter.js';

/**
 * What a delivery carries, for fault injection: `control` is a runtime
 * control message (dropped by `stallHandshake`), `transport` is everything
 * else (dial packets, close notices, stream headers, ACK/NACK, data).
 */
export type DeliveryKind = 'control' | 'transport';

/** Counters of a `MemoryNetwork`, see `MemoryNetwork.stats()`. */
export interface MemoryNetworkStats {
  /** `dial()` calls. */
  dials: number;
  /** Dials rejected with kind `refused`. */
  dialsRefused: number;
  /** Connection pairs created (the listener saw the connection). */
  connectionsOpened: number;
  /** Connection pairs whose both sides have closed. */
  connectionsClosed: number;
  /** Streams accepted by the remote. */
  streamsOpened: number;
  /** Streams rejected by the remote (NACK sent). */
  streamsRejected: number;
  /** Control messages delivered to an open connection side. */
  controlDelivered: number;
  /** Deliveries discarded by a fault (partition, stall, dead node, lost ACK). */
  dropped: number;
}

export interface AckFault {
  readonly delayMs: number;
  readonly lose: boolean;
}

/** Something whose liveness the network counts (a connection or stream pair). */
export interface Tracked {
  readonly live: boolean;
}

/** The network as seen by connections and streams. */
export interface Fabric {
  readonly clock: Clock;
  readonly counters: MemoryNetworkStats;
  /** Per-stream window of undelivered + unread bytes, per direction. */
  readonly windowBytes: number;
  /** Live streams one connection side may have opened at once. */
  readonly maxStreams: number;
  /** Events a connection side buffers before `setHandlers`. */
  readonly maxBufferedEvents: number;
  /** One-way latency from `from` to `to`, in ms. */
  latency(from: string, to: string): number;
  /** True when a delivery from `from` to `to` must be discarded right now. */
  blocked(from: string, to: string, kind: DeliveryKind): boolean;
  /** The ACK fault configured for ACKs/NACKs sent by `peerId`. */
  ackFault(peerId: string): AckFault | undefined;
  /** Runs `fn`, routing anything it throws to the network's error sink. */
  run(fn: () => void): void;
  /** `run` in the shape a connection's HandlerQueue delivers with (one function for the whole network). */
  readonly deliver: (what: string, deliver: () => void) => void;
  /** A fresh number, unique within the network. */
  nextId(): number;
  /** Re-counts a connection pair after its state changed. */
  connectionChanged(pair: Tracked): void;
  /** Re-counts a stream pair after its state changed. */
  streamChanged(pair: Tracked): void;
}

/**
 * An ordered, one-way delivery channel from one node to another. A message
 * arrives after the link latency (plus any extra delay) but never before a
 * message sent earlier on the same lane, so lowering the latency never
 * reorders. Fault checks happen both when a message is sent and when it
 * arrives: a message blocked at either moment is discarded.
 */
export class Lane {
  readonly #fabric: Fabric;
  readonly from: string;
  readonly to: string;
  #lastAt = Number.NEGATIVE_INFINITY;
  /**
   * Timers of the deliveries in flight: none, one handle, or several. An idle
   * lane holds no collection (a hub keeps two lanes per connection).
   */
  #timers: unknown = undefined;

  constructor(fabric: Fabric, from: string, to: string) {
    this.#fabric = fabric;
    this.from = from;
    this.to = to;
  }

  /** Timers this lane still has pending. */
  get inFlight(): number {
    const timers = this.#timers;
    return timers === undefined ? 0 : Array.isArray(timers) ? timers.length : 1;
  }

  send(kind: DeliveryKind, deliver: () => void, options: { extraDelayMs?: number; onDrop?: () => void } = {}): void {
    const fabric = this.#fabric;
    const clock = fabric.clock;
    const now = clock.now();
    const extra = options.extraDelayMs !== undefined && options.extraDelayMs > 0 ? options.extraDelayMs : 0;
    const at = Math.max(now + fabric.latency(this.from, this.to) + extra, this.#lastAt);
    this.#lastAt = at;
    const blockedAtSend = fabric.blocked(this.from, this.to, kind);
    const handle = clock.setTimeout(() => {
      this.#forget(handle);
      if (blockedAtSend || fabric.blocked(this.from, this.to, kind)) {
        fabric.counters.dropped++;
        if (options.onDrop !== undefined) fabric.run(options.onDrop);
        return;
      }
      fabric.run(deliver);
    }, at - now);
    const timers = this.#timers;
    if (timers === undefined) this.#timers = handle;
    else if (Array.isArray(timers)) timers.push(handle);
    else this.#timers = [timers, handle];
  }

  /** Discards everything in flight on this lane. */
  cancel(): void {
    const timers = this.#timers;
    this.#timers = undefined;
    if (timers === undefined) return;
    const clock = this.#fabric.clock;
    if (Array.isArray(timers)) for (const handle of timers) clock.clearTimeout(handle);
    else clock.clearTimeout(timers);
  }

  #forget(handle: unknown): void {
    const timers = this.#timers;
    if (timers === handle) {
      this.#timers = undefined;
    } else if (Array.isArray(timers)) {
      const i = timers.indexOf(handle);
      if (i >= 0) timers.splice(i, 1);
      if (timers.length === 1) this.#timers = timers[0];
      else if (timers.length === 0) this.#timers = undefined;
    }
  }
}
