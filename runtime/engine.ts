/**
 * The engine: hosts one machine per peer, routes requests to them, and
 * carries out their effects on the adapter. It keeps no lifecycle state of
 * its own beyond the registry: every decision is a transition in a machine.
 *
 * This file holds the public API, the lifecycle (start, stop) and the
 * registry of peer records; the rest is one idea a file, wired here as
 * components (js-libp2p's way): `requests.ts` (the one place requests are
 * answered), `dialer.ts`, `effects.ts` (the machine's `ConnectionEffects`),
 * `inbound.ts` (inbound connections, control messages, inbound streams),
 * `priorities.ts` (pruning), `inspection.ts`.
 */
import '../protocol/dispose.js';
import { Subject, type Observable, type Observer } from 'rxjs';
import { checkBoolean, checkFunction, checkNumber, checkObject, checkOptionalString, checkString, invalidType, invalidValue, optionsObject } from '../protocol/arguments.js';
import type { Adapter, Connection } from '../protocol/adapter.js';
import type { Clock, Random } from '../protocol/time.js';
import { transportPolicyOf } from '../protocol/timing.js';
import { connectionMachine, type ConnectionMachine } from '../machines/connection-machine.js';
import { ConnectionErrorCode, errorInfo, reasonFor, type ErrorCode, type ErrorInfo } from '../protocol/codes.js';
import type { ConnectionEvent, ConnectionLimits, ConnectionState } from '../machines/types.js';
import { Admission, type AdmissionSnapshot } from './admission.js';
import { diagnostics } from './diagnostics.js';
import { envFlag, levelled, stderrLogger, type LevelledLogger, type Logger, type LogLevel } from './logger.js';
import { systemClock } from './clock.js';
import { SharedActorSystem, createRootActor, stopRootActor } from './actor-system.js';
import { PeerRecord } from './peer-record.js';
import { DEFAULTS, maxAttempts, resolveOptions, type EngineInit, type EngineOptions } from './defaults.js';
import { Dialer } from './dialer.js';
import { EngineHeartbeats } from './heartbeat.js';
import { connectionEffects } from './effects.js';
import { Inbound } from './inbound.js';
import { Inspection, type InspectionSubscription } from './inspection.js';
import { PeerStates } from './peer-states.js';
import { Priorities } from './priorities.js';
import { ProtocolLimits, validateHandlerOptions, type HandlerOptions } from './protocol-limits.js';
import { Requests, type Lease } from './requests.js';
import { PeerlineError, toPeerlineError } from './errors.js';
import { engineHooks } from './test-hooks.js';
import {
  checkEngineConfig,
  checkPeerId,
  checkProtocol,
  checkRequestOptions,
  checkStartOptions,
  checkStopOptions,
  type InspectionObserver,
  type RequestOptions,
} from './validate.js';
import { Metrics, type MetricsSnapshot } from './metrics.js';
import { pinnedMaxAttempts } from './retry.js';
import { RESUME_PROTOCOL } from './resume/frames.js';
import { ResumeManager, type ResumeStats, type SessionTransition } from './resume/manager.js';
import type { ResumableStream, SessionSnapshot } from './resume/session.js';
import type { LeasedConnection, PeerStream, StreamHandler, StreamRequest } from './streams.js';

export type { Logger, LogLevel } from './logger.js';
export type { InspectionObserver } from './validate.js';
export { INSPECT_ATTACHED_EVENT, type InspectionSubscription } from './inspection.js';
export { transportErrorInfo } from './errors.js';

export interface EngineConfig extends EngineInit {
  /** The transport. Its `localPeerId` is this engine's identity. */
  adapter: Adapter;
  /** Every timer goes through it. @default the wall clock */
  clock?: Clock;
  /** Every jitter draws from it. @default Math.random */
  random?: Random;
  /** Where log lines go (see `Logger` for what each level carries). `console` works. @default stderr */
  logger?: Logger;
  /** Lines below this level are neither written nor built. @default 'warn' ('trace' when `trace` is on) */
  logLevel?: LogLevel;
  /**
   * Receives every XState inspection event of every peer machine: a
   * function, or an XState observer such as `@statelyai/inspect`'s
   * `inspector.inspect`. More can be attached later with `engine.inspect()`.
   */
  inspect?: InspectionObserver;
  /**
   * One trace line per transition: sets `logLevel` to 'trace'.
   * @default true when the environment variable PEERLINE_TRACE is 1, true, yes or on
   */
  trace?: boolean;
}

export interface StartOptions {
  /** Aborting it before the engine listens rejects start() with ABORTED, leaving nothing listening. */
  readonly signal?: AbortSignal;
}

export interface StopOptions {
  /** Skip draining: every connection is force closed at once. @default false */
  readonly force?: boolean;
  /** Aborting it turns a graceful stop (draining) into a forced one. */
  readonly signal?: AbortSignal;
}

/** `engine.metrics()`. */
export type EngineMetrics = MetricsSnapshot & {
  readonly pendingRequests: number;
  readonly dialQueue: { readonly active: number; readonly waiting: number };
  readonly resume: ResumeStats;
  readonly admission: AdmissionSnapshot;
};

export interface Transition {
  readonly peerId: string;
  /** null when the machine was just created. */
  readonly from: ConnectionState | null;
  readonly to: ConnectionState;
  /** Type of the event that caused it. */
  readonly event: string;
  /** Time on the engine's clock. */
  readonly at: number;
}

export interface PeerSnapshot {
  readonly peerId: string;
  readonly state: ConnectionState;
  readonly direction: 'inbound' | 'outbound';
  readonly pinned: boolean;
  /** Requests waiting for the connection or for stream credit. */
  readonly queued: number;
  /** Stream opens waiting for an ACK. */
  readonly opening: number;
  /** Streams open, both directions. */
  readonly streams: number;
  readonly leases: number;
  /** Consecutive failed attempts. */
  readonly attempts: number;
  readonly lastError: ErrorCode | null;
}

export interface EngineSnapshot {
  readonly status: EngineStatus;
  readonly peers: readonly PeerSnapshot[];
  /** Resumable streams, both sides, live or suspended. */
  readonly sessions: readonly SessionSnapshot[];
}

export type EngineStatus = 'idle' | 'running' | 'stopping' | 'stopped';

export interface OpenStreamOptions {
  readonly signal?: AbortSignal;
  /** The request fails with STREAM_TIMEOUT if it has no answer by then. */
  readonly timeoutMs?: number;
  /**
   * A stream that survives reconnects: it is suspended when the connection is
   * lost and resumed, without losing or repeating a byte, when the peer is
   * back (see `EngineOptions.resume`). Both sides must run peerline.
   */
  readonly resumable?: boolean;
  /**
   * Wait for the peer instead of failing while it backs off (gRPC's
   * waitForReady): a request to a peer in `errored` (a retry or the dial
   * backoff pending) stays queued for the next attempt, until its deadline
   * (`timeoutMs`), its signal, or the peer's machine ending (closed or
   * gaveUp) answers it. Without it such a request fails at once with the
   * failure's code.
   */
  readonly waitForReady?: boolean;
}

/** Options of `addPeer`. */
export interface AddPeerOptions {
  /**
   * Keep the peer connected, reconnecting by `pinnedRetry` (until it gives
   * up); false unpins it. @default its current pin (false for a new peer)
   */
  readonly pinned?: boolean;
  /** Never pruned to make room at `maxConnections`. @default false */
  readonly protected?: boolean;
  /** Priority tags, as with `tagPeer`: the peer's priority is the sum of their values. */
  readonly tags?: Readonly<Record<string, number>>;
}


function topState(value: unknown): ConnectionState | 'start' {
  if (typeof value === 'string') return value as ConnectionState;
  // The first key, without the array Object.keys makes: this runs on every microstep.
  for (const key in value as object) return key as ConnectionState;
  return 'start';
}

export class Engine {
  static {
    engineHooks.actorOf = (engine, peerId) => engine.#records.get(peerId)?.actor;
    engineHooks.heartbeatOf = (engine, peerId) => {
      const record = engine.#records.get(peerId);
      return record === undefined ? undefined : engine.#heartbeats.view(record);
    };
  }

  readonly options: Readonly<EngineOptions>;
  readonly peerId: string;
  readonly clock: Clock;
  /** Stream requests in. Grouped by peer and sent into that peer's machine. */
  readonly requests: Observer<StreamRequest>;
  /** Every state change of every machine; costs nothing while nobody subscribes. */
  readonly transitions$: Observable<Transition>;
  /** Every state change of every resumable stream's session machine (suspension, resume, end). */
  readonly sessionTransitions$: Observable<SessionTransition>;
  /**
   * Every peer with a machine and its state: the current map at once on
   * subscribe, then a new one after each turn in which something changed;
   * completes when the engine stops.
   */
  readonly peers$: Observable<ReadonlyMap<string, ConnectionState>>;

  readonly #adapter: Adapter;
  readonly #log: LevelledLogger;
  readonly #metrics = new Metrics();
  /** The heartbeats of every `ready` machine, on one clock timer. */
  readonly #heartbeats: EngineHeartbeats;
  /** The registry: one record per peer with a live machine. It is the grouping of requests by peer. */
  readonly #records = new Map<string, PeerRecord>();
  readonly #handlers = new Map<string, StreamHandler>();
  readonly #book = new Map<string, { addresses: string[]; pinned: boolean }>();
  readonly #protocolLimits: ProtocolLimits;
  readonly #peerStates: PeerStates;
  readonly #incoming = new Subject<StreamRequest>();
  readonly #transitions = new Subject<Transition>();
  readonly #resume: ResumeManager;
  readonly #admission: Admission;
  readonly #inspection: Inspection;
  readonly #priorities: Priorities;
  readonly #requests: Requests;
  readonly #dialer: Dialer;
  readonly #inbound: Inbound;
  readonly #machine: ConnectionMachine;
  #status: EngineStatus = 'idle';
  #stopping: Promise<void> | undefined;
  #starting: Promise<void> | undefined;
  #onEmpty: (() => void) | undefined;
  /** stop() was told to force (by `force`, or its signal): read when SHUTDOWN is sent. */
  #forced = false;
  /** While stop() waits for the machines to drain: makes that a forced close. */
  #escalate: (() => void) | undefined;
  /** The actor system of every peer machine, created with the first one. */
  #actorSystem: SharedActorSystem<PeerRecord> | undefined;
  #limits: ConnectionLimits | undefined;

  constructor(config: EngineConfig) {
    checkEngineConfig(config);
    const { adapter, clock, random, logger, logLevel, inspect, trace, ...init } = config;
    this.options = resolveOptions(init, 'config');
    if (this.options.pinnedRetry.strategy === 'none') {
      throw invalidValue('config.pinnedRetry.strategy', 'a backoff strategy: pinned peers reconnect by backoff', 'none');
    }
    this.#adapter = adapter;
    this.peerId = adapter.localPeerId;
    this.clock = clock ?? systemClock;
    const randomSource: Random = random ?? Math.random;
    const tracing = trace ?? envFlag(process.env.PEERLINE_TRACE);
    this.#log = levelled(logger ?? stderrLogger, tracing ? 'trace' : (logLevel ?? 'warn'));
    const failed = (what: string, error: unknown): void => this.#failed(what, error);
    this.#inspection = new Inspection(failed);
    if (inspect !== undefined) this.#inspection.attach(inspect, 'config.inspect');
    this.#admission = new Admission(this.options, this.clock, (line, error) => this.#log.warn(line, error), {
      localPeerId: this.peerId,
      debug: this.#log.enabled('debug') ? (line) => this.#log.debug(line) : undefined,
    });
    this.#protocolLimits = new ProtocolLimits(() => this.clock.now());
    this.#peerStates = new PeerStates({
      stateOf: (peerId) => {
        const record = this.#recordOf(peerId);
        return record === undefined || record.state === 'start' ? undefined : record.state;
      },
      states: () => this.#liveStates(),
    });
    this.peers$ = this.#peerStates.peers$;
    const record = (peerId: string): PeerRecord | undefined => this.#recordOf(peerId);
    this.#priorities = new Priorities(this.#metrics, record);
    const components = { localPeerId: this.peerId, clock: this.clock, metrics: this.#metrics, log: this.#log, failed };
    this.#heartbeats = new EngineHeartbeats({ ...components, timing: this.options.heartbeat });
    this.#requests = new Requests({
      ...components,
      maxProtocolLength: this.options.maxProtocolLength,
      maxConnections: this.options.maxConnections,
      refusal: () => (this.#status === 'running' ? undefined : this.#status === 'idle' ? 'the engine is not started' : 'the engine is stopping'),
      recordFor: (peerId) => this.#records.get(peerId) ?? this.#createRecord(peerId, 'outbound'),
    });
    this.#dialer = new Dialer({
      ...components,
      options: this.options,
      adapter,
      random: randomSource,
      record,
      addresses: (peerId) => this.#book.get(peerId)?.addresses ?? [],
    });
    this.#inbound = new Inbound({
      ...components,
      maxProtocolLength: this.options.maxProtocolLength,
      adapter,
      admission: this.#admission,
      protocolLimits: this.#protocolLimits,
      handlers: this.#handlers,
      heartbeats: this.#heartbeats,
      running: () => this.#status === 'running',
      record: (peerId) => this.#records.get(peerId),
      create: (peerId, connection) => this.#createRecord(peerId, 'inbound', connection),
    });
    this.#machine = connectionMachine.provide(
      connectionEffects({
        options: this.options,
        metrics: this.#metrics,
        requests: this.#requests,
        dialer: this.#dialer,
        inbound: this.#inbound,
        heartbeats: this.#heartbeats,
        handlers: this.#handlers,
        protocolLimits: this.#protocolLimits,
        record,
        openStream: (peerId, protocol, options) => this.openStream(peerId, protocol, options),
        failed,
      }),
    );
    // Routing: one subscription; the registry is the grouping by peer.
    this.#incoming.subscribe((request) => this.#route(request));
    this.requests = {
      next: (request) => this.#incoming.next(request),
      // A user's stream ending or failing must not stop the engine's routing.
      error: () => {},
      complete: () => {},
    };
    this.transitions$ = this.#transitions.asObservable();
    this.#resume = new ResumeManager(this.options.resume, {
      clock: this.clock,
      random: randomSource,
      pinnedRetry: this.options.pinnedRetry,
      openLink: (peerId, options) => this.openStream(peerId, RESUME_PROTOCOL, options),
      handler: (protocol) => (protocol === RESUME_PROTOCOL ? undefined : this.#handlers.get(protocol)),
      handlerFailed: (protocol, error) => {
        this.#metrics.handlerErrors += 1;
        this.#log.warn(`peerline: handler for ${protocol} failed`, error);
      },
      warn: (line, error) => this.#log.warn(line, error),
      trace: this.#log.tracing ? (line) => this.#log.trace(`peerline ${this.peerId} ${line}`) : undefined,
    });
    this.sessionTransitions$ = this.#resume.transitions$;
    this.#handlers.set(RESUME_PROTOCOL, (stream) => this.#resume.accept(stream));
  }

  get status(): EngineStatus {
    return this.#status;
  }

  /**
   * Starts listening and connects pinned peers. Aborting `signal` before the
   * adapter listens rejects with ABORTED and leaves the engine stopped,
   * nothing listening (a listen in progress is finished, then closed).
   */
  start(options?: StartOptions): Promise<void> {
    let signal: AbortSignal | undefined;
    try {
      ({ signal } = checkStartOptions(options));
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#status === 'stopping' || this.#status === 'stopped') {
      return Promise.reject(new PeerlineError('ENGINE_STOPPED', 'an engine cannot be started again after stop()'));
    }
    if (this.#starting !== undefined) return this.#starting;
    this.#starting = this.#start(signal);
    return this.#starting;
  }

  async #start(signal: AbortSignal | undefined): Promise<void> {
    const aborted = (): PeerlineError => toPeerlineError(errorInfo('ABORTED', 'start() was aborted'), undefined, signal?.reason);
    if (signal?.aborted) {
      this.#stopped();
      throw aborted();
    }
    this.#adapter.configure?.({ ...transportPolicyOf(this.options), admission: this.#admission.policy });
    await this.#adapter.listen((connection) => this.#inbound.onConnection(connection));
    if (signal?.aborted) {
      // Listening already: undo it before answering, as stop() would.
      await this.#closeAdapter(this.clock.now() + this.options.forceCloseGraceMs);
      this.#stopped();
      throw aborted();
    }
    this.#status = 'running';
    this.#log.info(`peerline ${this.peerId}: listening`);
    for (const [peerId, book] of this.#book) if (book.pinned) this.#ensurePinned(peerId);
  }

  /**
   * Stops every machine and the adapter. Always returns, at most
   * `drainDeadlineMs + forceCloseGraceMs` (+1 ms) after it is called
   * (`forceCloseGraceMs` + 1 ms with `force`): ready peers drain, the rest
   * close, every pending request is answered (ENGINE_STOPPED if nothing
   * else), then the adapter closes within what is left of that bound; an
   * adapter whose close has not settled by then goes on closing in the
   * background. `force`, or aborting `signal` (even after the stop began, or
   * on a later call), skips what is left of the draining.
   */
  stop(options?: StopOptions): Promise<void> {
    let parsed: { force: boolean; signal: AbortSignal | undefined };
    try {
      parsed = checkStopOptions(options);
    } catch (error) {
      return Promise.reject(error);
    }
    const { force, signal } = parsed;
    if (force || signal?.aborted === true) this.#force();
    else if (signal !== undefined && this.#status !== 'stopped') {
      const onAbort = (): void => this.#force();
      signal.addEventListener('abort', onAbort, { once: true });
      this.#stopping ??= this.#stop();
      void this.#stopping.then(() => signal.removeEventListener('abort', onAbort));
      return this.#stopping;
    }
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  /** `await using engine = createEngine(...)`: stop() at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /**
   * Attaches an inspector: `observer` receives every XState inspection event
   * of every peer machine from now on (a function, or an XState observer such
   * as `@statelyai/inspect`'s `inspector.inspect`). Machines already running
   * are announced to it at once: an `@xstate.actor` event, then an
   * `@xstate.snapshot` of their current state (event `INSPECT_ATTACHED_EVENT`),
   * then an `@xstate.actor` event per child actor. Only `next` is called.
   * Unsubscribing detaches it; with none attached, no inspection event is built.
   */
  inspect(observer: InspectionObserver): InspectionSubscription {
    return this.#inspection.inspect(observer, this.#records.values());
  }

  /**
   * Registers the handler for inbound streams of `protocol`. Returns the
   * unregister function. `options` limit its inbound streams (see
   * `HandlerOptions`); over a limit the stream is NACKed and the opener gets
   * STREAM_LIMIT.
   */
  handle(protocol: string, handler: StreamHandler, options?: HandlerOptions): () => void {
    checkProtocol('protocol', protocol, this.options.maxProtocolLength);
    checkFunction('handler', handler);
    if (protocol === RESUME_PROTOCOL) throw invalidValue('protocol', 'a protocol other than the one reserved for resumable streams', protocol);
    if (this.#handlers.has(protocol)) throw new Error(`a handler for ${protocol} is already registered`);
    const limits = validateHandlerOptions(options);
    this.#handlers.set(protocol, handler);
    this.#protocolLimits.set(protocol, limits);
    return () => {
      if (this.#handlers.get(protocol) !== handler) return;
      this.#handlers.delete(protocol);
      this.#protocolLimits.delete(protocol);
    };
  }

  /**
   * Adds (or replaces) a peer's addresses. A pinned peer is kept connected,
   * reconnecting by backoff until `pinnedRetry.maxAttempts` or the restart
   * intensity says it gives up. `pinned` given pins or unpins the peer, its
   * live machine included; left out, the peer keeps its pin (new peers are
   * not pinned), so updating addresses does not unpin. `protected` and
   * `tags` set its pruning priority.
   */
  addPeer(peerId: string, addresses: readonly string[], options?: AddPeerOptions): void {
    checkPeerId('peerId', peerId, this.peerId);
    if (!Array.isArray(addresses)) throw invalidType('addresses', 'an array of non-empty strings', addresses);
    addresses.forEach((address, i) => checkString(`addresses[${i}]`, address));
    const { pinned: pinnedOption, protected: protectedOption, tags } = optionsObject('options', options);
    checkBoolean('options.pinned', pinnedOption);
    checkBoolean('options.protected', protectedOption);
    if (tags !== undefined) {
      checkObject('options.tags', tags);
      for (const [tag, value] of Object.entries(tags)) checkNumber(`options.tags[${JSON.stringify(tag)}]`, value);
    }
    const pinned = pinnedOption === undefined ? (this.#book.get(peerId)?.pinned ?? false) : pinnedOption;
    this.#book.set(peerId, { addresses: [...addresses], pinned });
    if (protectedOption !== undefined) this.protectPeer(peerId, protectedOption);
    for (const [tag, value] of Object.entries(tags ?? {})) this.tagPeer(peerId, tag, value);
    const record = this.#recordOf(peerId);
    if (record !== undefined && record.actor.getSnapshot().context.pinned !== pinned) {
      record.actor.send({ type: 'PIN', pinned });
    }
    if (pinned && this.#status === 'running') this.#ensurePinned(peerId);
  }

  /**
   * Forgets a peer's addresses, pin and priority. Its live machine, if any,
   * is unpinned: a connection stays until idle, a peer backing off stops
   * retrying (dials would find no address).
   */
  removePeer(peerId: string): void {
    checkString('peerId', peerId);
    this.#book.delete(peerId);
    this.#priorities.forget(peerId);
    const record = this.#recordOf(peerId);
    if (record !== undefined && record.actor.getSnapshot().context.pinned) record.actor.send({ type: 'PIN', pinned: false });
  }

  /**
   * Sets the tag `tag` of a peer to `value` (a finite number). When the
   * connection limit is reached, the idle peer with the lowest priority (the
   * sum of its tag values) is pruned first, the least recently used among
   * equals. Tags are kept per peer id, connected or not, until removePeer.
   */
  tagPeer(peerId: string, tag: string, value: number): void {
    checkString('peerId', peerId);
    checkString('tag', tag);
    checkNumber('value', value);
    this.#priorities.tag(peerId, tag, value);
  }

  /** Removes a peer's tag. */
  untagPeer(peerId: string, tag: string): void {
    checkString('peerId', peerId);
    checkString('tag', tag);
    this.#priorities.untag(peerId, tag);
  }

  /** A protected peer is never pruned to make room (it may still close when idle). */
  protectPeer(peerId: string, on = true): void {
    checkString('peerId', peerId);
    checkBoolean('on', on);
    this.#priorities.protect(peerId, on);
  }

  /**
   * The state of `peerId`'s machine (BehaviorSubject semantics): the current
   * state at once if it has a machine, then every change; completes when that
   * machine ends (after `closed` or `gaveUp`) or the engine stops. Subscribed
   * while the peer has no machine, it waits for the next one. Nothing is kept
   * for a peer once its subscribers are gone.
   */
  state$(peerId: string): Observable<ConnectionState> {
    checkString('peerId', peerId);
    return this.#peerStates.state$(peerId);
  }

  /**
   * The network changed (an interface went down, the address changed, a
   * laptop woke up): every `ready` peer is probed at once with a ping that
   * must be answered within the heartbeat timeout, instead of waiting for
   * heartbeats to die. Dead connections go `errored` (HEARTBEAT_TIMEOUT)
   * then, live ones stay `ready`. Returns the number of peers probed.
   */
  networkChanged(): number {
    let probed = 0;
    for (const record of this.#records.values()) {
      if (!record.removed && this.#heartbeats.probe(record)) probed += 1;
    }
    this.#metrics.probes += probed;
    return probed;
  }

  /**
   * Opens a stream to `peerId` speaking `protocol`. Every failure rejects
   * with a PeerlineError; a bad argument rejects with a TypeError or
   * RangeError naming it (and is no request).
   */
  openStream(peerId: string, protocol: string, options: OpenStreamOptions & { resumable: true }): Promise<ResumableStream>;
  openStream(peerId: string, protocol: string, options?: OpenStreamOptions): Promise<PeerStream>;
  openStream(peerId: string, protocol: string, options?: OpenStreamOptions): Promise<PeerStream> {
    let checked: RequestOptions;
    try {
      checkPeerId('peerId', peerId, this.peerId);
      checkProtocol('protocol', protocol, this.options.maxProtocolLength);
      checked = checkRequestOptions('options', options);
      if (checked.resumable && protocol === RESUME_PROTOCOL) {
        throw invalidValue('protocol', 'a protocol other than the one reserved for resumable streams', protocol);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<PeerStream>((resolve, reject) => {
      const { signal, timeoutMs, resumable, waitForReady } = checked;
      if (resumable) {
        const link: { signal?: AbortSignal; timeoutMs?: number } = {};
        if (signal !== undefined) link.signal = signal;
        if (timeoutMs !== undefined) link.timeoutMs = timeoutMs;
        this.#resume.open(peerId, protocol, link).then(resolve, reject);
        return;
      }
      // Straight to the routing step `requests.next` leads to, without the request object and the Subject.
      try {
        this.#requests.submit({
          peerId,
          protocol,
          kind: 'stream',
          signal,
          deadline: timeoutMs === undefined ? undefined : this.clock.now() + timeoutMs,
          waitForReady,
          onStream: (answer) => (answer.ok ? resolve(answer.stream) : reject(answer.error)),
          onLease: undefined,
        });
      } catch (error) {
        this.#failed('route', error);
      }
    });
  }

  /**
   * Runs `fn` with the peer's connection leased: the idle timer waits while
   * it runs, and the lease is released however `fn` ends. The connection can
   * still fail at any moment; streams opened through it then fail with a
   * typed error.
   */
  async withConnection<T>(
    peerId: string,
    fn: (connection: LeasedConnection) => Promise<T> | T,
    options?: OpenStreamOptions,
  ): Promise<T> {
    checkPeerId('peerId', peerId, this.peerId);
    checkFunction('fn', fn);
    const { signal, timeoutMs, waitForReady } = checkRequestOptions('options', options);
    const lease = await new Promise<Lease>((resolve, reject) => {
      this.#requests.submit({
        peerId,
        protocol: '',
        kind: 'lease',
        signal,
        deadline: timeoutMs === undefined ? undefined : this.clock.now() + timeoutMs,
        waitForReady,
        onStream: (answer) => {
          if (!answer.ok) reject(answer.error);
        },
        onLease: resolve,
      });
    });
    try {
      return await fn(lease.connection);
    } finally {
      lease.release();
    }
  }

  /** Drains the peer's connection; resolves when its machine has closed. */
  drain(peerId: string): Promise<void> {
    try {
      checkString('peerId', peerId);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#signal(peerId, { type: 'DRAIN' });
  }

  /** Force closes the peer's connection with ConnectionErrorCode.ForceClose; resolves when closed. */
  forceClose(peerId: string, reason?: string): Promise<void> {
    try {
      checkString('peerId', peerId);
      checkOptionalString('reason', reason);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#signal(peerId, reason === undefined ? { type: 'FORCE_CLOSE' } : { type: 'FORCE_CLOSE', reason });
  }

  snapshot(): EngineSnapshot {
    const peers: PeerSnapshot[] = [];
    for (const record of this.#records.values()) {
      const context = record.actor.getSnapshot().context;
      peers.push({
        peerId: record.peerId,
        state: record.state === 'start' ? 'connecting' : record.state,
        direction: context.direction,
        pinned: context.pinned,
        queued: context.queue.length,
        opening: context.opening.length,
        streams: context.streams,
        leases: context.leases,
        attempts: context.attempts,
        lastError: context.lastError?.code ?? null,
      });
    }
    return { status: this.#status, peers, sessions: this.#resume.sessions() };
  }

  /** Counters, gauges and histograms; `prometheus(engine)` gives them as Prometheus text. */
  metrics(): EngineMetrics {
    return {
      ...this.#metrics.snapshot(),
      resume: this.#resume.stats(),
      pendingRequests: this.#requests.size,
      dialQueue: { active: this.#dialer.queue.active, waiting: this.#dialer.queue.waiting },
      admission: this.#admission.snapshot(),
    };
  }

  // ---------------------------------------------------------------- routing

  /** Runs once per request: catches inline rather than make a closure for `#guard`. */
  #route(request: StreamRequest): void {
    try {
      if (request === null || typeof request !== 'object' || typeof request.reply !== 'function') {
        this.#metrics.internalErrors += 1;
        this.#log.warn('peerline: dropped a stream request without a reply function');
        return;
      }
      this.#requests.submit({
        peerId: request.peerId,
        protocol: request.protocol,
        kind: 'stream',
        signal: request.signal,
        deadline: request.deadline,
        waitForReady: request.waitForReady === true,
        onStream: request.reply,
        onLease: undefined,
      });
    } catch (error) {
      this.#failed('route', error);
    }
  }

  // --------------------------------------------------------------- registry

  /** The peer's live record, if any. */
  #recordOf(peerId: string): PeerRecord | undefined {
    const record = this.#records.get(peerId);
    return record === undefined || record.removed ? undefined : record;
  }

  #createRecord(peerId: string, direction: 'outbound' | 'inbound', connection?: Connection): PeerRecord | undefined {
    if (!this.#priorities.makeRoom(this.#records.size, this.options.maxConnections)) return undefined;
    const book = this.#book.get(peerId);
    const pinned = book?.pinned ?? false;
    const record = new PeerRecord(peerId, this.#inbound, (this.#actorSystem ??= this.#newActorSystem()));
    this.#records.set(peerId, record);
    if (connection !== undefined) record.attach(connection);
    record.actor = createRootActor(this.#machine, record, {
      input: {
        peerId,
        localPeerId: this.peerId,
        direction,
        pinned,
        // One object for every machine: the options do not change.
        limits: (this.#limits ??= {
          maxQueued: this.options.maxQueuedPerPeer,
          maxStreams: this.options.maxStreamsPerConnection,
          maxInboundStreams: this.options.maxInboundStreamsPerConnection,
          maxAttempts: maxAttempts(this.options.retry),
          pinnedMaxAttempts: pinnedMaxAttempts(this.options.pinnedRetry),
          maxRestarts: this.options.pinnedRestartIntensity.maxRestarts,
          dialBackoff: this.options.dialBackoff.strategy !== 'none',
        }),
        ...(connection === undefined ? {} : { connectionId: connection.id }),
      },
    });
    record.actor.start();
    if (record.state === 'start' && !record.removed) this.#observe(record, record.actor.getSnapshot().value, 'xstate.init');
    return record;
  }

  #ensurePinned(peerId: string): void {
    if (this.#records.has(peerId)) return;
    this.#createRecord(peerId, 'outbound');
  }

  /** Removes a record from the registry, exactly once, on every exit path. */
  #remove(record: PeerRecord, leftover: ErrorInfo = errorInfo('CONNECTION_LOST', 'connection closed')): void {
    if (record.removed) return;
    record.removed = true;
    if (this.#records.get(record.peerId) === record) this.#records.delete(record.peerId);
    if (record.state !== 'start') this.#metrics.peers[record.state] -= 1;
    this.#guard('stop actor', () => stopRootActor(record.actor));
    // A machine stopped while `ready` runs no exit action: its heartbeat stops here.
    this.#heartbeats.stop(record);
    for (const connection of record.takeConnections()) {
      this.#guard('close', () => connection.close(ConnectionErrorCode.Abandoned, reasonFor(ConnectionErrorCode.Abandoned)));
    }
    for (const open of record.takeOpens()) {
      open.controller.abort();
      open.stream?.abort('connection closed');
    }
    for (const incoming of record.takeInbound()) this.#guard('reject', () => incoming.reject('connection closed'));
    // The machine answers everything it holds; anything left is answered here.
    for (const id of record.requestIds()) this.#requests.answer(id, leftover);
    for (const resolve of record.takeWaiters()) resolve();
    this.#priorities.removed(record);
    this.#peerStates.ended(record.peerId);
    if (this.#records.size === 0) this.#onEmpty?.();
  }

  *#liveStates(): Iterable<readonly [string, ConnectionState]> {
    for (const record of this.#records.values()) {
      if (!record.removed && record.state !== 'start') yield [record.peerId, record.state];
    }
  }

  #signal(peerId: string, event: ConnectionEvent): Promise<void> {
    const record = this.#records.get(peerId);
    if (record === undefined) return Promise.resolve();
    return new Promise<void>((resolve) => {
      record.addWaiter(resolve);
      record.actor.send(event);
    });
  }

  #newActorSystem(): SharedActorSystem<PeerRecord> {
    const system = new SharedActorSystem<PeerRecord>({
      clock: this.clock,
      hosts: () => this.#records.values(),
      microstep: (record, actorRef, snapshot, eventType) => {
        if (actorRef !== record.actor) return;
        const step = snapshot as { value: unknown; context: { pinned: boolean; queue: readonly unknown[] } };
        this.#observe(record, step.value, eventType);
        if (!record.removed) this.#priorities.stepped(record, step.value, step.context);
      },
      // The machine reached its final state, or failed: either way its record goes.
      hostEvent: (record, event) => {
        if (event.type.startsWith('xstate.error.actor')) {
          this.#metrics.internalErrors += 1;
          this.#log.error(`peerline: machine for peer ${record.peerId} failed`, event.error);
        } else if (!event.type.startsWith('xstate.done.actor')) {
          return;
        }
        this.#remove(record);
      },
    });
    this.#inspection.systemCreated(system);
    return system;
  }

  /** A machine's microstep: counts and publishes a change of its top-level state. */
  #observe(record: PeerRecord, value: unknown, eventType: string): void {
    const to = topState(value);
    const from = record.state;
    if (to === from || to === 'start') return;
    record.state = to;
    if (from !== 'start') this.#metrics.peers[from] -= 1;
    this.#metrics.peers[to] += 1;
    this.#metrics.transitions += 1;
    if (from === 'errored' && to === 'connecting') this.#metrics.retries += 1;
    if (to === 'gaveUp') this.#metrics.gaveUp += 1;
    const transition: Transition = {
      peerId: record.peerId,
      from: from === 'start' ? null : from,
      to,
      // The first state is the machine's creation, whatever step revealed it.
      event: from === 'start' ? 'xstate.init' : eventType,
      at: this.clock.now(),
    };
    if (this.#log.tracing) {
      this.#log.trace(`peerline ${this.peerId} peer ${record.peerId}: ${transition.from ?? "new"} -> ${to} (${transition.event})`);
    }
    if (to === 'ready') this.#resume.peerReady(record.peerId);
    this.#peerStates.changed(record.peerId, to);
    if (this.#transitions.observed) this.#transitions.next(transition);
    if (diagnostics.transition.hasSubscribers) diagnostics.transition.publish({ localPeerId: this.peerId, ...transition });
  }

  // ------------------------------------------------------------- shutdown

  async #stop(): Promise<void> {
    // A start in progress finishes first, so stop() never races it.
    if (this.#starting !== undefined) await this.#starting.catch(() => {});
    // Never started, or a start that was aborted: nothing is listening.
    if (this.#status === 'idle' || this.#status === 'stopped') {
      this.#stopped();
      return;
    }
    this.#status = 'stopping';
    // One bound for the whole stop, the machines and the adapter's close together.
    let deadline = this.clock.now() + (this.#forced ? 0 : this.options.drainDeadlineMs) + this.options.forceCloseGraceMs + 1;
    // Resumable streams end first: nothing would resume them now.
    this.#guard('stop resumable streams', () => this.#resume.stop());
    // No dial slot is granted from now on: a peer waiting for one closes instead.
    this.#dialer.queue.close();
    const shutdown = (force: boolean): void => {
      for (const record of [...this.#records.values()]) {
        this.#guard('shutdown', () => record.actor.send({ type: 'SHUTDOWN', force }));
      }
    };
    shutdown(this.#forced);
    if (this.#records.size > 0) {
      // Bounded: ready peers drain until the deadline, then force close and
      // wait the grace; every other state closes at once.
      let timer: unknown;
      await new Promise<void>((resolve) => {
        this.#onEmpty = resolve;
        timer = this.clock.setTimeout(resolve, deadline - this.clock.now());
        // Forced while draining: close what is left now, and wait only the grace.
        this.#escalate = () => {
          shutdown(true);
          deadline = Math.min(deadline, this.clock.now() + this.options.forceCloseGraceMs + 1);
          this.clock.clearTimeout(timer);
          if (this.#onEmpty !== undefined) timer = this.clock.setTimeout(resolve, deadline - this.clock.now());
        };
      });
      this.clock.clearTimeout(timer);
      this.#onEmpty = undefined;
      this.#escalate = undefined;
    }
    const stopped = errorInfo('ENGINE_STOPPED', 'the engine stopped');
    for (const record of [...this.#records.values()]) this.#remove(record, stopped);
    this.#requests.answerAll(stopped);
    await this.#closeAdapter(deadline);
    this.#stopped();
    this.#log.info(`peerline ${this.peerId}: stopped`);
  }

  /** Closes the adapter, waiting for it until `deadline` at most (it goes on closing in the background). */
  async #closeAdapter(deadline: number): Promise<void> {
    let timer: unknown;
    let closing: Promise<void>;
    try {
      closing = this.#adapter.close().catch((error: unknown) => this.#log.warn('peerline: adapter close failed', error));
    } catch (error) {
      this.#log.warn('peerline: adapter close failed', error);
      closing = Promise.resolve();
    }
    await Promise.race([
      closing,
      new Promise<void>((resolve) => {
        timer = this.clock.setTimeout(resolve, Math.max(0, deadline - this.clock.now()));
      }),
    ]);
    this.clock.clearTimeout(timer);
  }

  #stopped(): void {
    this.#status = 'stopped';
    // `requests` stays open: a request after stop() is answered ENGINE_STOPPED.
    this.#transitions.complete();
    this.#peerStates.complete();
  }

  /** stop() is to force close: now if it is waiting for the machines, else when it sends them SHUTDOWN. */
  #force(): void {
    if (this.#forced) return;
    this.#forced = true;
    this.#escalate?.();
  }

  /** Runs `fn`; anything it throws is counted and logged, never propagated. */
  #guard(what: string, fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.#failed(what, error);
    }
  }

  /** Counts and logs an internal error (hot paths catch inline rather than make a closure for `#guard`). */
  #failed(what: string, error: unknown): void {
    this.#metrics.internalErrors += 1;
    this.#log.error(`peerline: internal error in ${what}`, error);
  }
}

/** Creates an engine: `createEngine({ adapter, ...policies })`. */
export function createEngine(config: EngineConfig): Engine {
  return new Engine(config);
}

export { DEFAULTS };
