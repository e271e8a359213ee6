/**
 * Drives a real engine along a model path over the in-memory network on a
 * virtual clock, and checks it against the model after every step.
 *
 * The peer under test is a scripted remote: a bare `MemoryAdapter` node that
 * does nothing unless a step says so (send hello, answer a ping, ACK a stream
 * header, close the connection with a code, ...). Model stimuli become engine
 * calls (REQ -> openStream / withConnection, DRAIN -> drain, STOP -> stop),
 * network faults (DIAL_FAIL -> refuseDials, a dial the path does not complete
 * -> stallDials, DROP -> drop) and clock advances (a message costs one link
 * latency, a dial one round trip, TIMER runs to the next timer).
 *
 * The one fault the memory network cannot express (a transport that never
 * confirms a close it was asked for, as a QUIC peer that vanished) is played
 * by a thin wrapper around the local node's adapter (`LOSE_CLOSE`).
 */
import type { InspectionEvent } from 'xstate';
import { MemoryNetwork, VirtualClock, flushMicrotasks, type MemoryAdapter } from '../../adapters/memory/index.js';
import type { Adapter, CloseInfo, Connection, ConnectionHandlers, IncomingStream, Stream } from '../../adapters/adapter.js';
import { ConnectionErrorCode, reasonFor } from '../../machines/codes.js';
import { PROTOCOL_VERSION } from '../../machines/types.js';
import { createEngine, Engine, seededRandom, type PeerlineError, type PeerStream } from '../../runtime/index.js';
import {
  BLOCKERS,
  CAPPED,
  KNOWN,
  LATENCY,
  LOCAL,
  NEWCOMER,
  costOf,
  describeStimulus,
  engineOptions,
  protocolOf,
  remoteOf,
  viewOf,
  type ModelConfig,
  type ModelState,
  type PeerView,
  type Stimulus,
} from './model.js';
import type { TransitionRecorder } from './transitions.js';

/** The local node's adapter, with the one fault the memory network lacks. */
class LocalAdapter implements Adapter {
  readonly localPeerId: string;
  /** When on, a close this side asked for is never confirmed to the engine. */
  loseClose = false;
  /** Every connection this side got (inbound) or made (outbound), in order. */
  readonly seen: Connection[] = [];
  /** Pongs the engine sent (answers to the remote's pings). */
  pongs = 0;
  readonly #inner: MemoryAdapter;

  constructor(inner: MemoryAdapter) {
    this.#inner = inner;
    this.localPeerId = inner.localPeerId;
  }

  listen(onConnection: (connection: Connection) => void): Promise<void> {
    return this.#inner.listen((connection) => onConnection(this.#wrap(connection)));
  }

  async dial(peerId: string, address: string, options: { signal: AbortSignal }): Promise<Connection> {
    return this.#wrap(await this.#inner.dial(peerId, address, options));
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  #wrap(inner: Connection): Connection {
    this.seen.push(inner);
    const self = this;
    return {
      id: inner.id,
      localPeerId: inner.localPeerId,
      remotePeerId: inner.remotePeerId,
      direction: inner.direction,
      setHandlers(handlers: ConnectionHandlers): void {
        inner.setHandlers({
          onControl: (message) => handlers.onControl(message),
          onStream: (stream) => handlers.onStream(stream),
          onClose: (info: CloseInfo) => {
            if (info.local && self.loseClose) return;
            handlers.onClose(info);
          },
        });
      },
      sendControl: (message) => {
        if (message.type === 'pong') self.pongs += 1;
        inner.sendControl(message);
      },
      openStream: (protocol, options) => inner.openStream(protocol, options),
      close: (code, reason) => inner.close(code, reason),
    };
  }
}

/** The remote peer, scripted: it records what arrives and acts only when told. */
class ScriptedRemote {
  readonly adapter: MemoryAdapter;
  readonly conns = new Map<string, Connection>();
  /** Last ping sequence number received per connection. */
  readonly pings = new Map<string, number>();
  /** Stream headers received, by protocol (our requests use `/r/<id>`). */
  readonly incoming = new Map<string, IncomingStream>();
  readonly streams: Stream[] = [];

  constructor(adapter: MemoryAdapter) {
    this.adapter = adapter;
  }

  async listen(): Promise<void> {
    await this.adapter.listen((connection) => this.adopt(connection));
  }

  adopt(connection: Connection): void {
    this.conns.set(connection.id, connection);
    connection.setHandlers({
      onControl: (message) => {
        if (message.type === 'ping') this.pings.set(connection.id, message.seq);
      },
      onStream: (incoming) => {
        this.incoming.set(incoming.protocol, incoming);
      },
      onClose: () => {},
    });
  }

  dial(to: string, address: string): void {
    this.adapter.dial(to, address, { signal: new AbortController().signal }).then(
      (connection) => this.adopt(connection),
      () => {},
    );
  }
}

export class ModelMismatch extends Error {
  override name = 'ModelMismatch';
}

function outcomeOf(error: unknown): string {
  return typeof error === 'object' && error !== null && 'code' in error ? String((error as PeerlineError).code) : `thrown: ${String(error)}`;
}

/** One run of one path: an engine, a scripted remote, a network and a clock of its own. */
export class ModelDriver {
  readonly config: ModelConfig;
  readonly remoteId: string;
  readonly clock = new VirtualClock();
  readonly network: MemoryNetwork;
  readonly local: LocalAdapter;
  readonly remote: ScriptedRemote;
  readonly engine: Engine;
  readonly warnings: string[] = [];
  /** Our requests' outcomes: `ok`, `lease` or an error code. */
  readonly answers = new Map<string, string>();
  readonly #controllers = new Map<string, AbortController>();
  readonly #outStreams = new Map<string, PeerStream>();
  readonly #handled: PeerStream[] = [];
  readonly #inStreams = new Map<string, PeerStream>();
  readonly #inIds = new Set<string>();
  readonly #leases: Array<() => void> = [];
  /** Symbolic connection ids of the model -> real ids. */
  readonly #conns = new Map<string, string>();
  #nextReq = 0;
  #stopping: Promise<void> | undefined;

  constructor(config: ModelConfig, recorder: TransitionRecorder) {
    this.config = config;
    this.remoteId = remoteOf(config);
    this.network = new MemoryNetwork({ clock: this.clock, latencyMs: LATENCY });
    this.local = new LocalAdapter(this.network.node(LOCAL));
    this.remote = new ScriptedRemote(this.network.node(this.remoteId));
    const remoteId = this.remoteId;
    this.engine = createEngine({
      adapter: this.local,
      clock: this.clock,
      random: seededRandom(1),
      trace: false,
      logger: { trace: () => {}, warn: (line, error) => void this.warnings.push(`${line}${error === undefined ? '' : `: ${String(error)}`}`) },
      inspect: (event: InspectionEvent) => {
        if (event.type !== '@xstate.microstep') return;
        const peerId = (event.snapshot as unknown as { context?: { peerId?: string } }).context?.peerId;
        if (peerId === remoteId) recorder.inspect(event);
      },
      ...engineOptions(config),
    });
    this.engine.handle(KNOWN, (stream) => void this.#handled.push(stream));
    this.engine.handle(CAPPED, (stream) => void this.#handled.push(stream), { maxStreamsPerConnection: 1 });
  }

  async start(): Promise<void> {
    await this.remote.listen();
    for (const blocker of BLOCKERS) {
      this.network.node(blocker);
      this.network.stallDials(blocker);
      this.engine.addPeer(blocker, [this.network.address(blocker)]);
    }
    this.engine.addPeer(this.remoteId, [this.network.address(this.remoteId)], { pinned: this.config.pinned });
    await this.engine.start();
    await flushMicrotasks();
  }

  #remoteConn(before: ModelState): Connection {
    const sym = before.m === null ? null : (before.m.context as { connectionId: string | null }).connectionId;
    const id = sym === null ? undefined : this.#conns.get(sym);
    const connection = id === undefined ? undefined : this.remote.conns.get(id);
    if (connection === undefined) throw new ModelMismatch(`the remote has no side of connection ${String(sym)} (${String(id)})`);
    return connection;
  }

  #request(kind: 'stream' | 'lease', waitForReady = false): void {
    const id = (this.#nextReq++).toString(36);
    const controller = new AbortController();
    this.#controllers.set(id, controller);
    const failed = (error: unknown): void => void this.answers.set(id, outcomeOf(error));
    if (kind === 'stream') {
      this.engine.openStream(this.remoteId, `/r/${id}`, { signal: controller.signal, waitForReady }).then((stream) => {
        this.answers.set(id, 'ok');
        this.#outStreams.set(id, stream);
      }, failed);
    } else {
      this.engine
        .withConnection(
          this.remoteId,
          () =>
            new Promise<void>((resolve) => {
              this.answers.set(id, 'lease');
              this.#leases.push(resolve);
            }),
          { signal: controller.signal },
        )
        .catch(failed);
    }
  }

  #other(peerId: string): void {
    this.#nextReq++;
    this.engine.openStream(peerId, '/x').then(
      (stream) => stream.abort(),
      () => {},
    );
  }

  /** Carries out one step: `before` is the model state it starts from, `after` the one it must reach. */
  async step(stimulus: Stimulus, before: ModelState, after: ModelState): Promise<void> {
    const cost = costOf(before, stimulus);
    const L = LATENCY;
    const net = this.network;
    const remote = this.remoteId;
    // A dial in progress: completed, refused, or (for any other step) never answered.
    if (before.env.dialAt !== null) {
      net.refuseDials(remote, stimulus.type === 'DIAL_FAIL');
      net.stallDials(remote, stimulus.type !== 'DIAL_DONE' && stimulus.type !== 'DIAL_FAIL');
    }
    const wait = async (ms: number): Promise<void> => this.clock.advance(Math.max(0, ms));
    switch (stimulus.type) {
      case 'REQ':
        this.#request(stimulus.kind, stimulus.wait === true);
        break;
      case 'PROBE':
        this.engine.networkChanged();
        break;
      case 'PIN':
        this.engine.addPeer(remote, [net.address(remote)], { pinned: stimulus.pinned });
        break;
      case 'CANCEL':
        this.#controllers.get(stimulus.id)?.abort();
        break;
      case 'BLOCK':
        this.#other(BLOCKERS[before.env.blockers]!);
        break;
      case 'NEWCOMER':
        this.#other(NEWCOMER);
        break;
      case 'DIAL_DONE':
      case 'DIAL_FAIL':
        await wait(cost);
        net.refuseDials(remote, false);
        break;
      case 'REMOTE_DIAL':
        this.remote.dial(LOCAL, net.address(LOCAL));
        await wait(cost);
        break;
      case 'HELLO':
      case 'HELLO_ACK':
      case 'PING':
      case 'PONG':
      case 'GOAWAY':
      case 'CLOSE_REMOTE':
      case 'STREAM_IN': {
        await wait(cost - L);
        const connection = this.#remoteConn(before);
        const version = 'ok' in stimulus && !stimulus.ok ? PROTOCOL_VERSION + 1 : PROTOCOL_VERSION;
        if (stimulus.type === 'HELLO') connection.sendControl({ type: 'hello', version, peerId: remote });
        if (stimulus.type === 'HELLO_ACK') connection.sendControl({ type: 'hello-ack', version, peerId: remote });
        if (stimulus.type === 'PING') connection.sendControl({ type: 'ping', seq: 1000 });
        if (stimulus.type === 'PONG') connection.sendControl({ type: 'pong', seq: this.remote.pings.get(connection.id) ?? -1 });
        if (stimulus.type === 'GOAWAY') connection.sendControl({ type: 'goaway' });
        if (stimulus.type === 'CLOSE_REMOTE') connection.close(stimulus.code, reasonFor(stimulus.code as ConnectionErrorCode));
        if (stimulus.type === 'STREAM_IN') {
          connection.openStream(protocolOf(stimulus.proto), { signal: new AbortController().signal }).then(
            (stream) => void this.remote.streams.push(stream),
            () => {},
          );
        }
        await wait(L);
        break;
      }
      case 'DROP':
        net.drop(LOCAL, remote);
        break;
      case 'ACK':
      case 'NACK': {
        await wait(cost - L);
        const incoming = this.remote.incoming.get(`/r/${stimulus.id}`);
        if (incoming === undefined) throw new ModelMismatch(`the remote never got the stream header of request ${stimulus.id}`);
        this.remote.incoming.delete(`/r/${stimulus.id}`);
        if (stimulus.type === 'ACK') this.remote.streams.push(incoming.accept());
        else incoming.reject('refused');
        await wait(L);
        break;
      }
      case 'CLOSE_STREAM': {
        const stream = this.#outStreams.get(stimulus.id) ?? this.#inStreams.get(stimulus.id);
        if (stream === undefined) throw new ModelMismatch(`no open stream ${stimulus.id} to close`);
        this.#outStreams.delete(stimulus.id);
        this.#inStreams.delete(stimulus.id);
        stream.abort('closed by the test');
        break;
      }
      case 'RELEASE':
        this.#leases.shift()?.();
        break;
      case 'DRAIN':
        void this.engine.drain(remote);
        break;
      case 'FORCE_CLOSE':
        void this.engine.forceClose(remote);
        break;
      case 'STOP':
        this.#stopping = this.engine.stop({ force: stimulus.force });
        break;
      case 'LOSE_CLOSE':
        this.local.loseClose = true;
        break;
      case 'GHOST_OPENED':
        Engine.actorOf(this.engine, remote)?.send({ type: 'STREAM.OPENED', id: 'ghost' });
        break;
      case 'TIMER':
        // Nothing may happen a moment before the model's timer is due.
        if (cost > 0) {
          await wait(cost - 1);
          this.check(before, `${describeStimulus(stimulus)}, 1 ms before the timer is due`);
          await wait(1);
        }
        break;
    }
    await this.clock.advance(0);
    this.#map(after);
    this.check(after, describeStimulus(stimulus));
  }

  /** Learns the real ids behind the model's new connections and inbound streams. */
  #map(after: ModelState): void {
    const known = new Set(this.#conns.values());
    const fresh = this.local.seen.filter((c) => !known.has(c.id));
    for (const conn of after.env.conns) {
      if (this.#conns.has(conn.sym)) continue;
      const next = fresh.shift();
      if (next === undefined) throw new ModelMismatch(`the model made connection ${conn.sym}, the engine made none`);
      this.#conns.set(conn.sym, next.id);
    }
    if (fresh.length > 0) throw new ModelMismatch(`the engine made ${fresh.length} connection(s) the model did not`);
    // The handler sees inbound streams in the order the machine accepted them.
    for (const [i, id] of after.env.accepted.entries()) {
      if (this.#inIds.has(id)) continue;
      const stream = this.#handled[i];
      if (stream === undefined) throw new ModelMismatch(`the model accepted inbound stream ${id}, the handler got none`);
      this.#inIds.add(id);
      if (after.env.streams.some((r) => r.kind === 'in' && r.id === id)) this.#inStreams.set(id, stream);
    }
    if (this.#handled.length > after.env.accepted.length) {
      throw new ModelMismatch(`the handler got ${this.#handled.length} inbound streams, the model accepted ${after.env.accepted.length}`);
    }
  }

  /** What the engine shows of the peer, in the model's terms. */
  view(): PeerView | null {
    const peer = this.engine.snapshot().peers.find((p) => p.peerId === this.remoteId);
    if (peer === undefined) return null;
    const actor = Engine.actorOf(this.engine, this.remoteId);
    return {
      state: peer.state,
      value: JSON.stringify(actor?.getSnapshot().value),
      queued: peer.queued,
      opening: peer.opening,
      streams: peer.streams,
      leases: peer.leases,
      attempts: peer.attempts,
      lastError: peer.lastError,
    };
  }

  /** The delayed events the peer's actor has scheduled (XState's system keeps them per source actor). */
  scheduled(): Array<{ id: string; delay: number }> {
    const actor = Engine.actorOf(this.engine, this.remoteId);
    if (actor === undefined || actor.getSnapshot().status !== 'active') return [];
    const system = actor.system as unknown as { getSnapshot(): { _scheduledEvents: Record<string, { id: string; delay: number; source: unknown }> } };
    return Object.values(system.getSnapshot()._scheduledEvents)
      .filter((e) => e.source === actor)
      .map((e) => ({ id: e.id, delay: e.delay }));
  }

  /** Compares the engine with the model state `expected`; throws a ModelMismatch naming every difference. */
  check(expected: ModelState, after: string): void {
    const problems: string[] = [];
    const want = viewOf(expected);
    const got = this.view();
    if (JSON.stringify(want) !== JSON.stringify(got)) {
      problems.push(`peer: model ${JSON.stringify(want)}\n        engine ${JSON.stringify(got)}`);
    }
    for (const id of expected.env.requests) {
      const model = expected.env.answers[id];
      const engine = this.answers.get(id);
      if (model !== engine) problems.push(`request ${id}: model answered ${String(model)}, engine ${String(engine)}`);
    }
    const timers = (ts: Array<{ id: string; delay: number }>): string =>
      ts
        .map((t) => `${t.id.replace(/^xstate\.after\.([^.]+)\..*$/, '$1')}/${t.delay}`)
        .sort()
        .join(' ');
    const modelTimers = timers(expected.timers.filter((t) => !t.id.startsWith('env:') && t.id !== 'hb'));
    const engineTimers = timers(this.scheduled());
    if (modelTimers !== engineTimers) problems.push(`timers: model [${modelTimers}], engine [${engineTimers}]`);
    // The heartbeat: the engine's scheduler, not an XState timer.
    const hb = expected.env.hb;
    const hbTimer = expected.timers.find((t) => t.id === 'hb');
    const modelBeat = hb === null ? null : { phase: hb.phase, dueAt: hbTimer?.at ?? Infinity, seq: hb.seq, misses: hb.misses };
    const real = Engine.heartbeatOf(this.engine, this.remoteId);
    const engineBeat = real === undefined ? null : { phase: real.phase, dueAt: real.dueAt, seq: real.seq, misses: real.misses };
    if (JSON.stringify(modelBeat) !== JSON.stringify(engineBeat)) {
      problems.push(`heartbeat: model ${JSON.stringify(modelBeat)}, engine ${JSON.stringify(engineBeat)}`);
    }
    if (real !== undefined && !(real.armedAt <= real.dueAt)) problems.push(`heartbeat due at ${real.dueAt}, its timer armed for ${real.armedAt}`);
    if (this.local.pongs !== expected.env.pongs) problems.push(`pongs sent: model ${expected.env.pongs}, engine ${this.local.pongs}`);
    const total = this.engine.metrics().requests.total;
    if (total !== expected.env.nextReq) problems.push(`requests submitted: model ${expected.env.nextReq}, engine ${total}`);
    if (expected.env.anomalies.length > 0) problems.push(`broken promise: ${expected.env.anomalies.join('; ')}`);
    const internal = this.engine.metrics().internalErrors;
    if (internal > 0 || this.warnings.length > 0) problems.push(`engine internal errors: ${internal} ${this.warnings.join(' | ')}`);
    if (problems.length > 0) {
      throw new ModelMismatch(`after ${after} (t=${this.clock.now()}):\n      ${problems.join('\n      ')}`);
    }
  }

  /** Ends the run: stops the engine and checks that nothing is left behind. */
  async finish(): Promise<void> {
    for (const release of this.#leases.splice(0)) release();
    for (const stream of [...this.#outStreams.values(), ...this.#inStreams.values(), ...this.#handled]) stream.abort('test over');
    for (const stream of this.remote.streams) stream.abort('test over');
    this.network.refuseDials(this.remoteId, false);
    this.network.stallDials(this.remoteId, false);
    this.local.loseClose = false;
    let done = false;
    void (this.#stopping ?? this.engine.stop()).then(() => (done = true));
    for (let i = 0; i < 100 && !done; i++) {
      const next = this.clock.nextAt();
      await this.clock.advance(next === undefined ? 0 : Math.max(0, next - this.clock.now()));
    }
    if (!done) throw new ModelMismatch('engine.stop() did not return');
    await this.remote.adapter.close();
    await this.clock.advance(10 * LATENCY);
    const left: string[] = [];
    if (this.clock.pending() !== 0) left.push(`${this.clock.pending()} timers`);
    if (this.network.connectionCount() !== 0) left.push(`${this.network.connectionCount()} connections`);
    if (this.engine.metrics().pendingRequests !== 0) left.push(`${this.engine.metrics().pendingRequests} pending requests`);
    const unanswered = [...this.#controllers.keys()].filter((id) => !this.answers.has(id));
    if (unanswered.length > 0) left.push(`requests never answered: ${unanswered.join(', ')}`);
    if (left.length > 0) throw new ModelMismatch(`after stop: ${left.join(', ')} left`);
  }
}
