/**
 * Internal plumbing of the in-memory network: the view of the network that
 * connections and streams need, and the `Lane`, an ordered one-way channel on
 * the virtual clock. Not exported from the package.
 */
import type { Clock } from '../../protocol/time.js';

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
  /** Deliveries discarded by a fault (stalled handshake, dead node, lost ACK). */
  dropped: number;
  /** Deliveries held by a partition and delivered after the heal (as QUIC retransmits them). */
  retransmitted: number;
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
  /** True when a delivery from `from` to `to` must be discarded right now (dead node, stalled handshake). */
  blocked(from: string, to: string, kind: DeliveryKind): boolean;
  /** True while a partition cuts `from` from `to`: deliveries wait for the heal. */
  partitioned(from: string, to: string): boolean;
  /** `lane` holds deliveries for the heal: the network releases it then. */
  hold(lane: Lane): void;
  /** `lane` holds nothing any more (its connection ended). */
  unhold(lane: Lane): void;
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

/** A delivery waiting for a partition to heal. */
interface Held {
  readonly deliver: () => void;
  readonly onDrop: (() => void) | undefined;
  readonly kind: DeliveryKind;
}

/**
 * An ordered, one-way delivery channel from one node to another. A message
 * arrives after the link latency (plus any extra delay) but never before a
 * message sent earlier on the same lane, so lowering the latency never
 * reorders. A message blocked by a fault (dead node, stalled handshake) when
 * it is sent or when it arrives is discarded. A message that arrives while a
 * partition cuts the link is held, with every later one on the lane, and
 * delivered in order one latency after the heal: like QUIC, which
 * retransmits what was lost for as long as the connection lives (a
 * connection that ends meanwhile takes its held messages with it).
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
  /** Deliveries held by a partition, in order; undefined when none. */
  #held: Held[] | undefined = undefined;
  /** The timer delivering the held messages after a heal. */
  #flush: unknown = undefined;

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

  /** Messages held for the heal of a partition. */
  get held(): number {
    return this.#held?.length ?? 0;
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
        this.#drop(options.onDrop);
        return;
      }
      // Behind held messages, or cut off now: wait for the heal, in order.
      if (this.#held !== undefined || fabric.partitioned(this.from, this.to)) {
        this.#hold({ deliver, onDrop: options.onDrop, kind });
        return;
      }
      fabric.run(deliver);
    }, at - now);
    const timers = this.#timers;
    if (timers === undefined) this.#timers = handle;
    else if (Array.isArray(timers)) timers.push(handle);
    else this.#timers = [timers, handle];
  }

  /** The partition healed: the held messages go out again, arriving one latency from now. */
  release(): void {
    if (this.#held === undefined || this.#flush !== undefined) return;
    const fabric = this.#fabric;
    this.#flush = fabric.clock.setTimeout(() => {
      this.#flush = undefined;
      if (fabric.partitioned(this.from, this.to)) {
        // Cut again before they got through: wait for the next heal.
        fabric.hold(this);
        return;
      }
      const held = this.#held ?? [];
      this.#held = undefined;
      for (const message of held) {
        if (fabric.blocked(this.from, this.to, message.kind)) {
          this.#drop(message.onDrop);
          continue;
        }
        fabric.counters.retransmitted++;
        fabric.run(message.deliver);
      }
    }, fabric.latency(this.from, this.to));
  }

  /** A delivery discarded by a fault: counted, and its sender told. */
  #drop(onDrop: (() => void) | undefined): void {
    this.#fabric.counters.dropped++;
    if (onDrop !== undefined) this.#fabric.run(onDrop);
  }

  #hold(message: Held): void {
    if (this.#held === undefined) {
      this.#held = [message];
      this.#fabric.hold(this);
    } else {
      this.#held.push(message);
    }
  }

  /** Discards everything in flight on this lane, held messages included. */
  cancel(): void {
    if (this.#held !== undefined) this.#fabric.unhold(this);
    this.#held = undefined;
    if (this.#flush !== undefined) {
      this.#fabric.clock.clearTimeout(this.#flush);
      this.#flush = undefined;
    }
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
