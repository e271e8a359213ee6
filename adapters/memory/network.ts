/**
 * The in-memory network: a deterministic transport for tests and simulation.
 *
 * Every delay runs on the injected `Clock` (a `VirtualClock` in tests), so a
 * given sequence of calls always produces the same order of events. Nodes are
 * named by peer id and reached at `memory://<peerId>`. A dial costs one round
 * trip; control messages, stream headers, ACK/NACK, data and close notices each
 * take one link latency and arrive in the order they were sent.
 *
 * Faults (refused or stalled dials, stalled handshakes, dropped connections,
 * partitions, slow or lost ACKs, killed nodes) are switched on and off with the
 * methods below; each one is deterministic and takes effect on the clock. A
 * partition loses nothing for good, as over QUIC: what it cuts off is
 * delivered after the heal if the connection is still up (the engine's
 * heartbeat decides whether it is).
 *
 * @example
 * const clock = new VirtualClock();
 * const net = new MemoryNetwork({ clock, latencyMs: 5 });
 * const alice = net.node('alice');
 * const bob = net.node('bob');
 * await bob.listen((connection) => { ... });
 * const dialing = alice.dial('bob', net.address('bob'), { signal });
 * await clock.advance(10); // one round trip
 */
import { TransportError, type Adapter, type Connection, type DialOptions } from '../../protocol/adapter.js';
import { type Clock } from '../../protocol/time.js';
import {
  checkBoolean,
  checkFunction,
  checkNumber,
  checkObject,
  checkOptionalFunction,
  checkOptionalNumber,
  checkSignal,
  checkString,
  COUNT,
  invalidType,
  NON_NEGATIVE,
  optionsObject,
} from '../../protocol/arguments.js';
import { ConnectionPair, type ConnectionOwner, type MemoryConnection } from './connection.js';
import { Lane, type AckFault, type DeliveryKind, type Fabric, type MemoryNetworkStats } from './fabric.js';
import type { StreamPair } from './stream.js';

export type { MemoryNetworkStats } from './fabric.js';

export interface MemoryNetworkOptions {
  /** Every delay of the network runs on this clock. */
  readonly clock: Clock;
  /** One-way latency of every link, in ms (default 1). */
  readonly latencyMs?: number;
  /**
   * Seed for randomized behavior (default 1). The network currently makes no
   * random choice, so runs are deterministic whatever the seed.
   */
  readonly seed?: number;
  /** Receives anything a handler threw (default: ignored). */
  readonly onError?: (error: unknown) => void;
  /** Per-stream, per-direction window of undelivered + unread bytes (default 64 KiB). */
  readonly streamWindowBytes?: number;
  /** Streams one connection side may have open at once (default 256). */
  readonly maxStreamsPerConnection?: number;
  /** Events a connection side buffers before `setHandlers`; beyond, the connection fails (default 1024). */
  readonly maxBufferedEvents?: number;
}

/** A fault on the ACKs and NACKs a node sends, see `MemoryNetwork.ackFault`. */
export interface MemoryAckFault {
  /** Extra delay added to each ACK/NACK, in ms. */
  readonly delayMs?: number;
  /** When true, ACKs and NACKs are never delivered. */
  readonly lose?: boolean;
}

const SCHEME = 'memory://';

function parseAddress(address: string): string | undefined {
  if (typeof address !== 'string' || !address.startsWith(SCHEME)) return undefined;
  const peerId = address.slice(SCHEME.length);
  return peerId.length > 0 ? peerId : undefined;
}

function checkMs(ms: number, what: string): number {
  checkNumber(what, ms, NON_NEGATIVE);
  return ms;
}

function checkPeerList(name: string, value: unknown): void {
  if (!Array.isArray(value)) throw invalidType(name, 'an array of peer ids', value);
  value.forEach((peerId, i) => checkString(`${name}[${i}]`, peerId));
}

/** A dial in progress. */
class PendingDial {
  settled = false;
  pair: ConnectionPair | undefined;
  readonly #lanes: Lane[];
  readonly #signal: AbortSignal;
  readonly #onAbort = (): void => this.fail(new TransportError('aborted', 'dial aborted'), true);
  readonly #resolve: (connection: Connection) => void;
  readonly #reject: (error: unknown) => void;
  readonly #onSettled: (dial: PendingDial) => void;

  constructor(
    lanes: Lane[],
    signal: AbortSignal,
    resolve: (connection: Connection) => void,
    reject: (error: unknown) => void,
    onSettled: (dial: PendingDial) => void,
  ) {
    this.#lanes = lanes;
    this.#signal = signal;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#onSettled = onSettled;
    signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  succeed(): void {
    const pair = this.pair;
    if (pair === undefined || !this.#finish()) return;
    this.#resolve(pair.outbound);
  }

  /** Rejects; a connection made meanwhile is closed (the remote told unless `notifyRemote` is false). */
  fail(error: TransportError, notifyRemote: boolean): void {
    if (!this.#finish()) return;
    this.pair?.outbound.abandon(notifyRemote);
    this.#reject(error);
  }

  #finish(): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.#signal.removeEventListener('abort', this.#onAbort);
    for (const lane of this.#lanes) lane.cancel();
    if (this.pair !== undefined) this.pair.outbound.onEnded = undefined;
    this.#onSettled(this);
    return true;
  }
}

/** What an adapter needs from its network. */
interface AdapterHost {
  dial(from: MemoryAdapter, peerId: string, address: string, signal: AbortSignal): Promise<Connection>;
}

/** Network-side operations on an adapter, kept out of its public surface; set by `MemoryAdapter`'s static block. */
let internals: {
  /** The record this adapter's connections report to. */
  owner(adapter: MemoryAdapter): ConnectionOwner;
  addDial(adapter: MemoryAdapter, dial: PendingDial): void;
  deleteDial(adapter: MemoryAdapter, dial: PendingDial): void;
  /** The connection side ended: the adapter forgets it. */
  forget(adapter: MemoryAdapter, connection: MemoryConnection): void;
  adopt(adapter: MemoryAdapter, connection: MemoryConnection): void;
  offer(adapter: MemoryAdapter, connection: MemoryConnection): void;
  kill(adapter: MemoryAdapter, silent: boolean): void;
};

/** What an adapter's connections report to: its peer id, and their end. */
class AdapterOwner implements ConnectionOwner {
  readonly #adapter: MemoryAdapter;
  constructor(adapter: MemoryAdapter) {
    this.#adapter = adapter;
  }
  get localPeerId(): string {
    return this.#adapter.localPeerId;
  }
  connectionEnded(connection: MemoryConnection): void {
    internals.forget(this.#adapter, connection);
  }
}

/**
 * One node of a `MemoryNetwork`, implementing the transport `Adapter`. Get it
 * from `MemoryNetwork.node(peerId)`; do not construct it directly.
 *
 * A node of a large network mostly holds one connection: its collections are
 * kept small (one connection in a field, a Set only for several; dials in a
 * Set made on the first dial).
 */
export class MemoryAdapter implements Adapter {
  readonly localPeerId: string;
  readonly #host: AdapterHost;
  readonly #run: (fn: () => void) => void;
  readonly #owner: AdapterOwner;
  #state: 'open' | 'closed' | 'dead' = 'open';
  #onConnection: ((connection: Connection) => void) | undefined;
  /** Open connection sides: none, one, or several in the order they were adopted. */
  #connections: MemoryConnection | Set<MemoryConnection> | undefined = undefined;
  #dials: Set<PendingDial> | undefined = undefined;

  static {
    internals = {
      owner: (adapter) => adapter.#owner,
      addDial: (adapter, dial) => void (adapter.#dials ??= new Set()).add(dial),
      deleteDial: (adapter, dial) => {
        adapter.#dials?.delete(dial);
        if (adapter.#dials?.size === 0) adapter.#dials = undefined;
      },
      adopt: (adapter, connection) => {
        const held = adapter.#connections;
        if (held === undefined || held === connection) adapter.#connections = connection;
        else if (held instanceof Set) held.add(connection);
        else adapter.#connections = new Set([held, connection]);
      },
      offer: (adapter, connection) => {
        const onConnection = adapter.#onConnection;
        if (onConnection !== undefined) adapter.#run(() => onConnection(connection));
      },
      kill: (adapter, silent) => adapter.#kill(silent),
      forget: (adapter, connection) => {
        const held = adapter.#connections;
        if (held === connection) adapter.#connections = undefined;
        else if (held instanceof Set) {
          held.delete(connection);
          if (held.size === 1) adapter.#connections = held.values().next().value;
        }
      },
    };
  }

  constructor(host: AdapterHost, run: (fn: () => void) => void, peerId: string) {
    this.#host = host;
    this.#run = run;
    this.localPeerId = peerId;
    this.#owner = new AdapterOwner(this);
  }

  /** True while `listen` has been called and the adapter is neither closed nor killed. */
  get isListening(): boolean {
    return this.#state === 'open' && this.#onConnection !== undefined;
  }

  /** True once `close()` was called or the node was killed. */
  get isClosed(): boolean {
    return this.#state !== 'open';
  }

  /** Open connection sides of this adapter. */
  get connectionCount(): number {
    const held = this.#connections;
    return held === undefined ? 0 : held instanceof Set ? held.size : 1;
  }

  /**
   * Starts accepting connections. Calling it again replaces the callback.
   * Rejects with kind `closed` once the adapter is closed or its node killed.
   */
  listen(onConnection: (connection: Connection) => void): Promise<void> {
    if (typeof onConnection !== 'function') return Promise.reject(invalidType('onConnection', 'a function', onConnection));
    if (this.#state !== 'open') return Promise.reject(new TransportError('closed', `adapter ${this.localPeerId} is closed`));
    this.#onConnection = onConnection;
    return Promise.resolve();
  }

  /**
   * Dials `memory://<node>` expecting `peerId` there. Every outcome takes one
   * round trip: the connection, or kind `refused` (nothing listening, a dial to
   * self, `refuseDials`) or `identity-mismatch` (the remote never sees the
   * connection). Dials to a dead node, a stalled node or across a partition
   * never complete; aborting `signal` rejects at once with kind `aborted`, and
   * a connection already made for the dial is closed on both sides.
   */
  dial(peerId: string, address: string, options: DialOptions): Promise<Connection> {
    try {
      checkString('peerId', peerId);
      checkString('address', address);
      checkObject('options', options);
      checkSignal('options.signal', options.signal);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#host.dial(this, peerId, address, options.signal);
  }

  /**
   * Stops listening, fails pending dials (kind `closed`) and closes every
   * connection (code undefined, reason 'adapter closed'). A closed adapter
   * stays closed: `MemoryNetwork.node(peerId)` then returns a fresh one.
   */
  close(): Promise<void> {
    if (this.#state !== 'open') return Promise.resolve();
    this.#state = 'closed';
    this.#onConnection = undefined;
    for (const dial of [...(this.#dials ?? [])]) dial.fail(new TransportError('closed', 'adapter closed'), true);
    for (const connection of this.#connectionList()) connection.shutdown(undefined, 'adapter closed');
    return Promise.resolve();
  }

  #kill(silent: boolean): void {
    if (this.#state === 'dead') return;
    this.#state = 'dead';
    this.#onConnection = undefined;
    for (const dial of [...(this.#dials ?? [])]) dial.fail(new TransportError('closed', 'node killed'), !silent);
    for (const connection of this.#connectionList()) connection.kill(silent);
  }

  /** The open connection sides, in the order they were adopted (a copy). */
  #connectionList(): MemoryConnection[] {
    const held = this.#connections;
    return held === undefined ? [] : held instanceof Set ? [...held] : [held];
  }
}

interface NodeRecord {
  adapter: MemoryAdapter;
  dead: boolean;
}

/** A deterministic in-memory network of `MemoryAdapter` nodes. */
export class MemoryNetwork {
  readonly clock: Clock;
  readonly seed: number;
  #latencyMs: number;
  readonly #linkLatency = new Map<string, number>();
  readonly #nodes = new Map<string, NodeRecord>();
  readonly #refused = new Set<string>();
  readonly #stalledDials = new Set<string>();
  readonly #stalledHandshakes = new Set<string>();
  readonly #partitions: Array<readonly [ReadonlySet<string>, ReadonlySet<string>]> = [];
  readonly #ackFaults = new Map<string, AckFault>();
  readonly #liveConnections = new Set<ConnectionPair>();
  readonly #liveStreams = new Set<StreamPair>();
  /** Lanes holding deliveries until the partitions heal. */
  readonly #heldLanes = new Set<Lane>();
  readonly #counters: MemoryNetworkStats = {
    dials: 0,
    dialsRefused: 0,
    connectionsOpened: 0,
    connectionsClosed: 0,
    streamsOpened: 0,
    streamsRejected: 0,
    controlDelivered: 0,
    dropped: 0,
    retransmitted: 0,
  };
  readonly #onError: ((error: unknown) => void) | undefined;
  readonly #fabric: Fabric;
  readonly #host: AdapterHost;
  #nextId = 1;

  constructor(options: MemoryNetworkOptions) {
    checkObject('options', options);
    checkObject('options.clock', options.clock);
    for (const method of ['now', 'setTimeout', 'clearTimeout'] as const) checkFunction(`options.clock.${method}`, options.clock[method]);
    this.clock = options.clock;
    this.#latencyMs = checkMs(options.latencyMs ?? 1, 'options.latencyMs');
    checkOptionalNumber('options.seed', options.seed, { integer: true });
    this.seed = options.seed ?? 1;
    checkOptionalFunction('options.onError', options.onError);
    this.#onError = options.onError;
    const windowBytes = options.streamWindowBytes ?? 64 * 1024;
    const maxStreams = options.maxStreamsPerConnection ?? 256;
    const maxBufferedEvents = options.maxBufferedEvents ?? 1024;
    checkNumber('options.streamWindowBytes', windowBytes, COUNT);
    checkNumber('options.maxStreamsPerConnection', maxStreams, COUNT);
    checkNumber('options.maxBufferedEvents', maxBufferedEvents, COUNT);
    const counters = this.#counters;
    this.#fabric = {
      clock: this.clock,
      counters,
      windowBytes,
      maxStreams,
      maxBufferedEvents,
      latency: (from, to) => this.#latency(from, to),
      blocked: (from, to, kind) => this.#blocked(from, to, kind),
      partitioned: (from, to) => this.#partitioned(from, to),
      hold: (lane) => void this.#heldLanes.add(lane),
      unhold: (lane) => void this.#heldLanes.delete(lane),
      ackFault: (peerId) => this.#ackFaults.get(peerId),
      run: (fn) => this.#runGuarded(fn),
      deliver: (_what, deliver) => this.#runGuarded(deliver),
      nextId: () => this.#nextId++,
      connectionChanged: (pair) => {
        const connection = pair as ConnectionPair;
        if (connection.live) this.#liveConnections.add(connection);
        else this.#liveConnections.delete(connection);
      },
      streamChanged: (pair) => {
        const stream = pair as StreamPair;
        if (stream.live) this.#liveStreams.add(stream);
        else this.#liveStreams.delete(stream);
      },
    };
    this.#host = {
      dial: (from, peerId, address, signal) => this.#dial(from, peerId, address, signal),
    };
  }

  /**
   * The node `peerId`, created on first use. Returns the same adapter until it
   * is closed; after `close()` a fresh adapter is returned. After `kill()` the
   * dead adapter is returned until `revive()`, which makes a fresh one.
   */
  node(peerId: string): MemoryAdapter {
    checkString('peerId', peerId);
    const record = this.#nodes.get(peerId);
    if (record === undefined) {
      const adapter = this.#newAdapter(peerId);
      this.#nodes.set(peerId, { adapter, dead: false });
      return adapter;
    }
    if (!record.dead && record.adapter.isClosed) record.adapter = this.#newAdapter(peerId);
    return record.adapter;
  }

  /** The address of node `peerId`: `memory://<peerId>`. */
  address(peerId: string): string {
    checkString('peerId', peerId);
    return `${SCHEME}${peerId}`;
  }

  /** Sets the one-way latency of every link without its own (ms). In-flight messages keep their time. */
  setLatency(ms: number): void {
    this.#latencyMs = checkMs(ms, 'ms');
  }

  /** Sets the one-way latency between `a` and `b`, both ways; `null` returns to the network latency. */
  setLinkLatency(a: string, b: string, ms: number | null): void {
    checkString('a', a);
    checkString('b', b);
    const key = MemoryNetwork.#linkKey(a, b);
    if (ms === null) this.#linkLatency.delete(key);
    else this.#linkLatency.set(key, checkMs(ms, 'ms'));
  }

  /** Dials to `peerId` are refused (kind `refused`, after the round trip) while on. */
  refuseDials(peerId: string, on = true): void {
    checkString('peerId', peerId);
    checkBoolean('on', on);
    if (on) this.#refused.add(peerId);
    else this.#refused.delete(peerId);
  }

  /**
   * Dials to `peerId` never complete while on: the dial packet vanishes and the
   * dialer waits until its signal aborts. Decided when the packet arrives.
   */
  stallDials(peerId: string, on = true): void {
    checkString('peerId', peerId);
    checkBoolean('on', on);
    if (on) this.#stalledDials.add(peerId);
    else this.#stalledDials.delete(peerId);
  }

  /**
   * Connections to and from `peerId` still come up, but control messages sent
   * by or to it are silently dropped while on, so the runtime's handshake (and
   * heartbeats) time out. Streams and close notices are not affected.
   */
  stallHandshake(peerId: string, on = true): void {
    checkString('peerId', peerId);
    checkBoolean('on', on);
    if (on) this.#stalledHandshakes.add(peerId);
    else this.#stalledHandshakes.delete(peerId);
  }

  /**
   * Every connection between `a` and `b` (or every connection of `a` when `b`
   * is omitted) fails now: both sides get onClose with error true, code
   * undefined and reason 'connection lost' on the next microtask, nothing in
   * flight on them arrives, and their streams end with an error.
   */
  drop(a: string, b?: string): void {
    checkString('a', a);
    if (b !== undefined) checkString('b', b);
    for (const pair of [...this.#liveConnections]) {
      if (pair.joins(a, b)) pair.fail('connection lost');
    }
  }

  /**
   * Cuts every link between a node of `sideA` and a node of `sideB` until
   * `heal()`. Connections stay up, and nothing is lost for good, as over
   * QUIC, which retransmits: deliveries across (control messages, stream
   * headers, ACK/NACK, data, close notices, dial packets), including those
   * sent before the cut that would arrive during it, are held, and delivered
   * in their order one latency after the heal, if their connection (or dial)
   * is still there then. A partition longer than the engine's heartbeat
   * allows ends the connection through the heartbeat (as QUIC's idle timeout
   * would). Several partitions add up.
   */
  partition(sideA: readonly string[], sideB: readonly string[]): void {
    checkPeerList('sideA', sideA);
    checkPeerList('sideB', sideB);
    this.#partitions.push([new Set(sideA), new Set(sideB)]);
  }

  /** True while a partition cuts `a` from `b`. */
  isPartitioned(a: string, b: string): boolean {
    checkString('a', a);
    checkString('b', b);
    return this.#partitioned(a, b);
  }

  /** Removes every partition; what they held is delivered one latency later. */
  heal(): void {
    this.#partitions.length = 0;
    const lanes = [...this.#heldLanes];
    this.#heldLanes.clear();
    for (const lane of lanes) lane.release();
  }

  /**
   * ACKs and NACKs sent by `peerId` are delayed by an extra `delayMs`, or lost
   * when `lose` is true (the opener then waits until its signal aborts).
   * Data the acceptor writes waits behind a delayed ACK. `null` clears it.
   */
  ackFault(peerId: string, fault: MemoryAckFault | null): void {
    checkString('peerId', peerId);
    if (fault === null) {
      this.#ackFaults.delete(peerId);
      return;
    }
    checkObject('fault', fault as unknown);
    checkBoolean('fault.lose', fault.lose);
    this.#ackFaults.set(peerId, {
      delayMs: checkMs(fault.delayMs ?? 0, 'fault.delayMs'),
      lose: fault.lose === true,
    });
  }

  /**
   * The node `peerId` dies: its adapter stops listening and is closed for
   * good, its pending dials reject (kind `closed`), and its connections end:
   * its own side gets onClose with error true ('node killed'), the remote
   * side gets onClose with error true ('connection lost') after latency,
   * unless `silent`, in which case the remote hears nothing. Deliveries to a
   * dead node vanish and dials to it stall. `node(peerId)` keeps returning the
   * dead adapter until `revive(peerId)`.
   */
  kill(peerId: string, options?: { silent?: boolean }): void {
    checkString('peerId', peerId);
    const { silent } = optionsObject('options', options);
    checkBoolean('options.silent', silent);
    let record = this.#nodes.get(peerId);
    if (record === undefined) {
      record = { adapter: this.#newAdapter(peerId), dead: false };
      this.#nodes.set(peerId, record);
    }
    if (record.dead) return;
    record.dead = true;
    internals.kill(record.adapter, silent === true);
  }

  /**
   * Brings a killed node back with a fresh adapter (not listening yet) and
   * returns it; `node(peerId)` returns it from now on. Old connections stay
   * closed. On a live node this is `node(peerId)`.
   */
  revive(peerId: string): MemoryAdapter {
    checkString('peerId', peerId);
    const record = this.#nodes.get(peerId);
    if (record === undefined || !record.dead) return this.node(peerId);
    record.dead = false;
    record.adapter = this.#newAdapter(peerId);
    return record.adapter;
  }

  /** True when `peerId` was killed and not revived. */
  isDead(peerId: string): boolean {
    checkString('peerId', peerId);
    return this.#nodes.get(peerId)?.dead === true;
  }

  /** Connections with at least one side still open. */
  connectionCount(): number {
    return this.#liveConnections.size;
  }

  /** Streams with any part still open on either side (including ones waiting for ACK or an answer). */
  streamCount(): number {
    return this.#liveStreams.size;
  }

  /** A snapshot of the network's counters. */
  stats(): MemoryNetworkStats {
    return { ...this.#counters };
  }

  static #linkKey(a: string, b: string): string {
    return a < b ? JSON.stringify([a, b]) : JSON.stringify([b, a]);
  }

  #newAdapter(peerId: string): MemoryAdapter {
    return new MemoryAdapter(this.#host, this.#fabric.run, peerId);
  }

  #runGuarded(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      const onError = this.#onError;
      if (onError === undefined) return;
      try {
        onError(error);
      } catch {
        // The error sink itself failed; nothing left to tell.
      }
    }
  }

  #latency(from: string, to: string): number {
    // Most networks set no per-link latency: skip building the link's key.
    if (this.#linkLatency.size === 0) return this.#latencyMs;
    return this.#linkLatency.get(MemoryNetwork.#linkKey(from, to)) ?? this.#latencyMs;
  }

  #partitioned(a: string, b: string): boolean {
    for (const [x, y] of this.#partitions) {
      if ((x.has(a) && y.has(b)) || (x.has(b) && y.has(a))) return true;
    }
    return false;
  }

  #blocked(from: string, to: string, kind: DeliveryKind): boolean {
    if (this.#nodes.get(to)?.dead === true) return true;
    if (kind === 'control' && (this.#stalledHandshakes.has(from) || this.#stalledHandshakes.has(to))) return true;
    return false;
  }

  #dial(from: MemoryAdapter, peerId: string, address: string, signal: AbortSignal): Promise<Connection> {
    this.#counters.dials++;
    if (from.isClosed) return Promise.reject(new TransportError('closed', `adapter ${from.localPeerId} is closed`));
    if (signal.aborted) return Promise.reject(new TransportError('aborted', 'dial aborted'));
    const target = parseAddress(address);
    if (target === undefined) return Promise.reject(new TransportError('unreachable', `not a memory address: ${String(address)}`));
    const self = from.localPeerId;
    const outbound = new Lane(this.#fabric, self, target);
    const back = new Lane(this.#fabric, target, self);
    return new Promise<Connection>((resolve, reject) => {
      const dial = new PendingDial([outbound, back], signal, resolve, reject, (done) => internals.deleteDial(from, done));
      internals.addDial(from, dial);
      outbound.send('transport', () => this.#dialArrived(dial, from, peerId, target, back));
    });
  }

  /** The dial packet reached `target`: answer, or connect. */
  #dialArrived(dial: PendingDial, from: MemoryAdapter, peerId: string, target: string, back: Lane): void {
    if (dial.settled) return;
    const record = this.#nodes.get(target);
    if (record?.dead === true || this.#stalledDials.has(target)) {
      this.#counters.dropped++;
      return;
    }
    const answer = (kind: 'refused' | 'identity-mismatch', message: string): void => {
      back.send('transport', () => {
        if (dial.settled) return;
        if (kind === 'refused') this.#counters.dialsRefused++;
        dial.fail(new TransportError(kind, message), false);
      });
    };
    if (target === from.localPeerId) return answer('refused', 'a node cannot dial itself');
    if (record === undefined || this.#refused.has(target) || !record.adapter.isListening) {
      return answer('refused', `nothing listens at ${this.address(target)}`);
    }
    if (target !== peerId) {
      return answer('identity-mismatch', `expected peer ${peerId} at ${this.address(target)}, found ${target}`);
    }
    const listener = record.adapter;
    const pair = new ConnectionPair(this.#fabric, internals.owner(from), internals.owner(listener));
    dial.pair = pair;
    internals.adopt(from, pair.outbound);
    internals.adopt(listener, pair.inbound);
    pair.outbound.onEnded = () => dial.fail(new TransportError('closed', 'connection lost while dialing'), false);
    // The answer goes first on the listener's control lane, ahead of anything
    // the listener sends from its onConnection callback.
    pair.inbound.lane.send('transport', () => dial.succeed());
    internals.offer(listener, pair.inbound);
  }
}
