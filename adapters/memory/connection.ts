/**
 * Connections of the in-memory network. A `ConnectionPair` is one connection
 * seen from both ends: the dialer's `outbound` side and the listener's
 * `inbound` side, each a `MemoryConnection` implementing the adapter's
 * `Connection`. Each side sends on its own control `Lane`, so control
 * messages and the close notice arrive in order.
 */
import { TransportError, type CloseInfo, type Connection, type ConnectionHandlers, type IncomingStream, type Stream } from '../../protocol/adapter.js';
import { type ControlMessage } from '../../protocol/control.js';
import { HandlerQueue, type TransportEvent } from '../../protocol/handler-queue.js';
import { Lane, type Fabric, type Tracked } from './fabric.js';
import { StreamPair, type StreamSide } from './stream.js';


/** The adapter a connection side belongs to. */
export interface ConnectionOwner {
  readonly localPeerId: string;
  /** Called once, when the side ends for any reason. */
  connectionEnded(connection: MemoryConnection): void;
}

/** One connection, both ends. */
export class ConnectionPair implements Tracked {
  readonly id: string;
  readonly outbound: MemoryConnection;
  readonly inbound: MemoryConnection;
  /** Live streams of this connection, in both directions; created with the first (an idle connection has none). */
  #streams: Set<StreamPair> | undefined = undefined;
  readonly #fabric: Fabric;

  constructor(fabric: Fabric, dialer: ConnectionOwner, listener: ConnectionOwner) {
    this.#fabric = fabric;
    this.id = `mem-${fabric.nextId()}`;
    this.outbound = new MemoryConnection(fabric, this, 'outbound', dialer, listener.localPeerId);
    this.inbound = new MemoryConnection(fabric, this, 'inbound', listener, dialer.localPeerId);
    this.outbound.peer = this.inbound;
    this.inbound.peer = this.outbound;
    fabric.counters.connectionsOpened++;
    fabric.connectionChanged(this);
  }

  /** Live streams of this connection, in both directions (a copy). */
  get streams(): StreamPair[] {
    return this.#streams === undefined ? [] : [...this.#streams];
  }

  /** Live streams `side` opened. */
  openedBy(side: MemoryConnection): number {
    let count = 0;
    if (this.#streams !== undefined) for (const stream of this.#streams) if (stream.openerSide === side) count++;
    return count;
  }

  addStream(stream: StreamPair): void {
    (this.#streams ??= new Set()).add(stream);
  }

  /** True while at least one side is open. */
  get live(): boolean {
    return !this.outbound.isClosed || !this.inbound.isClosed;
  }

  /** True when the connection runs between `a` and `b` (or touches `a` when `b` is omitted). */
  joins(a: string, b?: string): boolean {
    const x = this.outbound.localPeerId;
    const y = this.inbound.localPeerId;
    if (b === undefined) return x === a || y === a;
    return (x === a && y === b) || (x === b && y === a);
  }

  /** The connection fails at once on both sides; nothing in flight arrives. */
  fail(reason: string): void {
    this.outbound.lane.cancel();
    this.inbound.lane.cancel();
    for (const stream of this.streams) stream.cancelInFlight();
    const info: CloseInfo = { local: false, code: undefined, reason, error: true };
    this.outbound.end(info);
    this.inbound.end(info);
  }

  /** @internal Called by a side when it ends. */
  sideEnded(): void {
    if (!this.live) {
      // Both sides are closed: whatever is still in flight could only reach a
      // closed side, so it is discarded now and leaves no timer behind.
      this.#fabric.counters.connectionsClosed++;
      this.outbound.lane.cancel();
      this.inbound.lane.cancel();
      for (const stream of this.streams) stream.cancelInFlight();
    }
    this.#fabric.connectionChanged(this);
  }

  /** @internal Called by a stream when its state changed. */
  streamChanged(stream: StreamPair): void {
    if (!stream.live && this.#streams !== undefined) {
      this.#streams.delete(stream);
      if (this.#streams.size === 0) this.#streams = undefined;
    }
    this.#fabric.streamChanged(stream);
  }
}

/** One side of a connection. */
export class MemoryConnection implements Connection, StreamSide {
  readonly id: string;
  readonly localPeerId: string;
  readonly remotePeerId: string;
  readonly direction: 'inbound' | 'outbound';
  readonly fabric: Fabric;
  /** Control lane from this side to the other one. */
  readonly lane: Lane;
  /** The other side; set right after construction. */
  peer!: MemoryConnection;
  /** Called once when this side ends, before its onClose is delivered. */
  onEnded: ((info: CloseInfo) => void) | undefined;

  readonly #pair: ConnectionPair;
  readonly #owner: ConnectionOwner;
  readonly #events: HandlerQueue;
  #closeInfo: CloseInfo | undefined;

  constructor(
    fabric: Fabric,
    pair: ConnectionPair,
    direction: 'inbound' | 'outbound',
    owner: ConnectionOwner,
    remotePeerId: string,
  ) {
    this.fabric = fabric;
    this.#pair = pair;
    this.id = pair.id;
    this.direction = direction;
    this.#owner = owner;
    this.localPeerId = owner.localPeerId;
    this.remotePeerId = remotePeerId;
    this.lane = new Lane(fabric, this.localPeerId, remotePeerId);
    this.#events = new HandlerQueue(
      fabric.maxBufferedEvents,
      // Nobody reads this side: fail rather than buffer without bound.
      () => pair.fail('too many events buffered before setHandlers'),
      fabric.deliver,
    );
  }

  get isClosed(): boolean {
    return this.#closeInfo !== undefined;
  }

  setHandlers(handlers: ConnectionHandlers): void {
    this.#events.setHandlers(handlers);
  }

  sendControl(message: ControlMessage): void {
    if (this.isClosed) return;
    const copy = { ...message } as ControlMessage;
    const peer = this.peer;
    this.lane.send('control', () => peer.#receiveControl(copy));
  }

  openStream(protocol: string, options: { signal: AbortSignal }): Promise<Stream> {
    const info = this.#closeInfo;
    if (info !== undefined) {
      return Promise.reject(new TransportError('closed', `connection closed: ${info.reason}`, info.code));
    }
    const signal = options.signal;
    if (signal.aborted) return Promise.reject(new TransportError('aborted', 'stream open aborted'));
    if (this.#pair.openedBy(this) >= this.fabric.maxStreams) {
      return Promise.reject(new TransportError('stream-limit', `at most ${this.fabric.maxStreams} open streams per connection`));
    }
    const pair = this.#pair;
    const stream = new StreamPair(
      this.fabric,
      `${this.id}/${this.fabric.nextId()}`,
      protocol,
      {
        opener: this,
        acceptor: this.peer,
        toAcceptor: new Lane(this.fabric, this.localPeerId, this.remotePeerId),
        toOpener: new Lane(this.fabric, this.remotePeerId, this.localPeerId),
      },
      (changed) => pair.streamChanged(changed),
    );
    pair.addStream(stream);
    this.fabric.streamChanged(stream);
    return stream.open(signal);
  }

  close(code: number, reason: string): void {
    this.shutdown(code, reason);
  }

  /** Closes on purpose: onClose here now, a close notice to the remote after latency. */
  shutdown(code: number | undefined, reason: string): void {
    if (!this.end({ local: true, code, reason, error: false })) return;
    const peer = this.peer;
    if (peer.isClosed) return;
    const notice: CloseInfo = { local: false, code, reason, error: false };
    this.lane.send('transport', () => peer.end(notice, true));
  }

  /** This side's node died; unless `silent`, the remote hears of it after latency. */
  kill(silent: boolean): void {
    if (!this.end({ local: false, code: undefined, reason: 'node killed', error: true })) return;
    const peer = this.peer;
    if (silent || peer.isClosed) return;
    const notice: CloseInfo = { local: false, code: undefined, reason: 'connection lost', error: true };
    this.lane.send('transport', () => peer.end(notice, true));
  }

  /** A dial gave up on this (never handed out) outbound side. */
  abandon(notifyRemote: boolean): void {
    if (!this.end({ local: true, code: undefined, reason: 'dial abandoned', error: false })) return;
    const peer = this.peer;
    if (!notifyRemote || peer.isClosed) return;
    const notice: CloseInfo = { local: false, code: undefined, reason: 'dial abandoned', error: true };
    this.lane.send('transport', () => peer.end(notice, true));
  }

  /**
   * Ends this side: its streams end, its adapter forgets it, and onClose is
   * delivered (now when `sync`, else on the next microtask). Returns false
   * when the side had already ended, so every path reports exactly once.
   */
  end(info: CloseInfo, sync = false): boolean {
    if (this.#closeInfo !== undefined) return false;
    this.#closeInfo = info;
    const error = new TransportError('closed', `connection closed: ${info.reason}`, info.code);
    for (const stream of this.#pair.streams) {
      stream.sideClosed(stream.openerSide === this ? 'opener' : 'acceptor', error);
    }
    this.fabric.run(() => this.#owner.connectionEnded(this));
    const hook = this.onEnded;
    this.onEnded = undefined;
    if (hook !== undefined) this.fabric.run(() => hook(info));
    this.#pair.sideEnded();
    if (sync) this.#emit({ type: 'close', info });
    else queueMicrotask(() => this.#emit({ type: 'close', info }));
    return true;
  }

  /** @internal Hands an incoming stream to `onStream`. */
  offerStream(incoming: IncomingStream): void {
    if (this.isClosed) return;
    this.#emit({ type: 'stream', stream: incoming });
  }

  #receiveControl(message: ControlMessage): void {
    if (this.isClosed) return;
    this.fabric.counters.controlDelivered++;
    this.#emit({ type: 'control', message });
  }

  #emit(event: TransportEvent): void {
    this.#events.emit(event);
  }
}
