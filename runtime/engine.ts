import './dispose.js';
import { Subject, type Observable, type Observer } from 'rxjs';
import { fromCallback, fromPromise, type Actor, type AnyActorRef, type InspectionEvent, type Subscription } from 'xstate';
import { checkBoolean, checkFunction, checkOptionalString, checkString, invalidType, invalidValue, optionsObject } from '../adapters/arguments.js';
import {
  TransportError,
  type Adapter,
  type CloseInfo,
  type Clock,
  type Connection,
  type ControlMessage,
  type IncomingStream,
  type Stream,
} from '../adapters/adapter.js';
import { closedError, connectionMachine, type ConnectionMachine } from '../machines/connection-machine.js';
import { ConnectionErrorCode, reasonFor, type ErrorCode, type ErrorInfo } from '../machines/codes.js';
import type { ConnectionEvent, ConnectionLimits, ConnectionState, DialOutput, RequestRef } from '../machines/types.js';
import { Admission, type AdmissionSnapshot } from './admission.js';
import { diagnostics } from './diagnostics.js';
import { envFlag, levelled, stderrLogger, type LevelledLogger, type Logger, type LogLevel } from './logger.js';
import { systemClock, type Random } from './clock.js';
import { SharedActorSystem, createRootActor, stopRootActor } from './actor-system.js';
import { DialQueue } from './dial-queue.js';
import { Entry, Link, type EntryHost, type OpenRecord } from './entry.js';
import { DEFAULTS, maxAttempts, resolveOptions, type EngineInit, type EngineOptions } from './defaults.js';
import { PeerlineError, toPeerlineError } from './errors.js';
import {
  checkEngineConfig,
  checkPeerId,
  checkProtocol,
  checkRequestOptions,
  checkStartOptions,
  checkStopOptions,
  inspectionCallback,
  type InspectionObserver,
  type RequestOptions,
} from './validate.js';
import { Metrics, type MetricsSnapshot } from './metrics.js';
import { backoffDelay } from './retry.js';
import { RESUME_PROTOCOL } from './resume/frames.js';
import { ResumeManager, type ResumeStats, type SessionTransition } from './resume/manager.js';
import type { ResumableStream, SessionSnapshot } from './resume/session.js';
import {
  wrapStream,
  type LeasedConnection,
  type PeerStream,
  type StreamAnswer,
  type StreamHandler,
  type StreamRequest,
} from './streams.js';

export type { Logger, LogLevel } from './logger.js';
export type { InspectionObserver } from './validate.js';

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

/** What `engine.inspect()` returns: detaches the inspector (also with `using`). */
export interface InspectionSubscription extends Subscription {
  [Symbol.dispose](): void;
}

/** `engine.metrics()`. */
export type EngineMetrics = MetricsSnapshot & {
  readonly pendingRequests: number;
  readonly dialQueue: { readonly active: number; readonly waiting: number };
  readonly resume: ResumeStats;
  readonly admission: AdmissionSnapshot;
};

/**
 * The snapshot event a machine that was already running gets when an
 * inspector is attached, after its `@xstate.actor` event, so the inspector
 * knows it and its current state.
 */
export const INSPECT_ATTACHED_EVENT = Object.freeze({ type: 'peerline.inspect.attached' });

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
}

type LeaseValue = { readonly connection: LeasedConnection; readonly release: () => void };

/**
 * A request the engine owes an answer. Settled exactly once (see `#settle`).
 *
 * It is also the listener on the caller's signal (`handleEvent`), one
 * listener for the request's whole life: while pending, an abort cancels the
 * request; once a stream is delivered, an abort aborts the stream, until the
 * stream closes.
 */
class Pending {
  readonly id: string;
  readonly peerId: string;
  readonly protocol: string;
  readonly kind: 'stream' | 'lease';
  readonly signal: AbortSignal | undefined;
  readonly onStream: (answer: StreamAnswer) => void;
  readonly onLease: ((value: LeaseValue) => void) | undefined;
  /** When it arrived, on the engine's clock: stream-open latency and the diagnostics' durations. */
  readonly startedAt: number;
  readonly #onAbort: (pending: Pending) => void;
  timer: unknown = undefined;
  /** True while the record listens on `signal`. */
  listening = false;
  entry: Entry | undefined = undefined;
  /** The stream delivered for this request, until it closes. */
  stream: Stream | undefined = undefined;

  constructor(
    id: string,
    spec: Omit<RequestSpec, 'deadline'>,
    onAbort: (pending: Pending) => void,
    startedAt: number,
  ) {
    this.id = id;
    this.peerId = spec.peerId;
    this.protocol = spec.protocol;
    this.kind = spec.kind;
    this.signal = spec.signal;
    this.onStream = spec.onStream;
    this.onLease = spec.onLease;
    this.#onAbort = onAbort;
    this.startedAt = startedAt;
  }

  handleEvent(): void {
    const stream = this.stream;
    if (stream !== undefined) stream.abort('aborted');
    else this.#onAbort(this);
  }

  listen(): void {
    if (this.signal === undefined || this.listening) return;
    this.listening = true;
    this.signal.addEventListener('abort', this, { once: true });
  }

  unlisten(): void {
    if (!this.listening) return;
    this.listening = false;
    this.signal!.removeEventListener('abort', this);
  }
}

/** What a request is, as `#submit` takes it. */
interface RequestSpec {
  readonly peerId: string;
  readonly protocol: string;
  readonly kind: 'stream' | 'lease';
  readonly signal: AbortSignal | undefined;
  readonly deadline: number | undefined;
  readonly onStream: (answer: StreamAnswer) => void;
  readonly onLease: ((value: LeaseValue) => void) | undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function info(code: ErrorCode, message: string, closeCode?: ConnectionErrorCode): ErrorInfo {
  return closeCode === undefined ? { code, message } : { code, message, closeCode };
}

function topState(value: unknown): ConnectionState | 'start' {
  if (typeof value === 'string') return value as ConnectionState;
  // The first key, without the array Object.keys makes: this runs on every microstep.
  for (const key in value as object) return key as ConnectionState;
  return 'start';
}

/** Maps a transport failure to the error a request or a machine ends with. */
export function transportErrorInfo(error: unknown, during: 'dial' | 'stream'): ErrorInfo {
  if (error instanceof TransportError) {
    switch (error.kind) {
      case 'refused':
      case 'unreachable':
        // A refusal by admission control names its code (RateLimited, ...).
        return info('CONNECT_REFUSED', error.message, error.closeCode);
      case 'identity-mismatch':
        return info('PEER_IDENTITY_MISMATCH', error.message, ConnectionErrorCode.IdentityMismatch);
      case 'rejected':
        return info('STREAM_REJECTED', error.message);
      case 'protocol':
        return info('PROTOCOL_VIOLATION', error.message, ConnectionErrorCode.ProtocolViolation);
      case 'aborted':
        return info(during === 'dial' ? 'CONNECT_TIMEOUT' : 'ABORTED', error.message);
      case 'stream-limit':
      case 'closed':
        return info('CONNECTION_LOST', error.message);
    }
  }
  return info('CONNECTION_LOST', describe(error));
}

/**
 * The engine: hosts one machine per peer, routes requests to them, and
 * carries out their effects on the adapter. It keeps no lifecycle state of
 * its own beyond the registry: every decision is a transition in a machine.
 */
export class Engine {
  readonly options: Readonly<EngineOptions>;
  readonly peerId: string;
  readonly clock: Clock;
  /** Stream requests in. Grouped by peer and sent into that peer's machine. */
  readonly requests: Observer<StreamRequest>;
  /** Every state change of every machine; costs nothing while nobody subscribes. */
  readonly transitions$: Observable<Transition>;
  /** Every state change of every resumable stream's session machine (suspension, resume, end). */
  readonly sessionTransitions$: Observable<SessionTransition>;

  readonly #adapter: Adapter;
  readonly #random: Random;
  readonly #log: LevelledLogger;
  /** Attached inspection callbacks (guarded), with their subscription to the actor system once it exists. */
  readonly #inspectors = new Map<(event: InspectionEvent) => void, Subscription | undefined>();
  readonly #metrics = new Metrics();
  readonly #machine: ConnectionMachine;
  readonly #dialQueue: DialQueue;
  readonly #entries = new Map<string, Entry>();
  readonly #pending = new Map<string, Pending>();
  readonly #handlers = new Map<string, StreamHandler>();
  readonly #book = new Map<string, { addresses: string[]; pinned: boolean }>();
  readonly #incoming = new Subject<StreamRequest>();
  readonly #transitions = new Subject<Transition>();
  readonly #resume: ResumeManager;
  readonly #admission: Admission;
  #status: EngineStatus = 'idle';
  #nextRequest = 0;
  #stopping: Promise<void> | undefined;
  #starting: Promise<void> | undefined;
  #onEmpty: (() => void) | undefined;
  /** stop() was told to force (by `force`, or its signal): read when SHUTDOWN is sent. */
  #forced = false;
  /** While stop() waits for the machines to drain: makes that a forced close. */
  #escalate: (() => void) | undefined;
  /** The callbacks of every entry's connections, shared. */
  readonly #host: EntryHost = {
    onControl: (entry, connection, message) => {
      try {
        this.#onControl(entry, connection, message);
      } catch (error) {
        this.#failed('control', error);
      }
    },
    onStream: (entry, connection, incoming) => {
      try {
        this.#onStream(entry, connection, incoming);
      } catch (error) {
        this.#failed('inbound stream', error);
      }
    },
    onClose: (entry, connection, close) => {
      try {
        this.#onClose(entry, connection, close);
      } catch (error) {
        this.#failed('close', error);
      }
    },
  };
  /** A pending request's caller aborted. One function for all of them. */
  readonly #onRequestAbort = (pending: Pending): void => this.#cancel(pending, info('ABORTED', 'the request was aborted'));
  /** The actor system of every peer machine, created with the first one. */
  #actorSystem: SharedActorSystem<Entry> | undefined;
  #limits: ConnectionLimits | undefined;

  constructor(config: EngineConfig) {
    checkEngineConfig(config);
    const { adapter, clock, random, logger, logLevel, inspect, trace, ...init } = config;
    this.options = resolveOptions(init, 'config');
    if (this.options.pinnedRetry.strategy === 'none') {
      throw invalidValue('config.pinnedRetry.strategy', 'a backoff strategy: pinned peers retry forever', 'none');
    }
    this.#adapter = adapter;
    this.peerId = adapter.localPeerId;
    this.clock = clock ?? systemClock;
    this.#random = random ?? Math.random;
    const tracing = trace ?? envFlag(process.env.PEERLINE_TRACE);
    this.#log = levelled(logger ?? stderrLogger, tracing ? 'trace' : (logLevel ?? 'warn'));
    if (inspect !== undefined) this.#attachInspector(inspect, 'config.inspect');
    this.#dialQueue = new DialQueue(this.options.dialConcurrency, this.options.dialQueueLimit);
    this.#admission = new Admission(this.options, this.clock, (line, error) => this.#log.warn(line, error), {
      localPeerId: this.peerId,
      debug: this.#log.enabled('debug') ? (line) => this.#log.debug(line) : undefined,
    });
    this.#machine = this.#provide();
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
      random: this.#random,
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

  /**
   * @internal For benchmarks that measure routing overhead: the live actor of
   * a peer, to send events to it directly. Not part of the public API.
   */
  static actorOf(engine: Engine, peerId: string): Actor<ConnectionMachine> | undefined {
    return engine.#entries.get(peerId)?.actor;
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
    const aborted = (): PeerlineError => toPeerlineError(info('ABORTED', 'start() was aborted'), undefined, signal?.reason);
    if (signal?.aborted) {
      this.#stopped();
      throw aborted();
    }
    const o = this.options;
    this.#adapter.configure?.({
      connectTimeoutMs: o.connectTimeoutMs,
      handshakeTimeoutMs: o.handshakeTimeoutMs,
      heartbeatIntervalMs: o.heartbeat.intervalMs,
      heartbeatTimeoutMs: o.heartbeat.timeoutMs,
      heartbeatMisses: o.heartbeat.misses,
      maxProtocolLength: o.maxProtocolLength,
      maxInboundStreams: o.maxInboundStreamsPerConnection,
      admission: this.#admission.policy,
    });
    await this.#adapter.listen((connection) => this.#guard('inbound connection', () => this.#onConnection(connection)));
    if (signal?.aborted) {
      // Listening already: undo it before answering, as stop() would.
      await this.#closeAdapter();
      this.#stopped();
      throw aborted();
    }
    this.#status = 'running';
    this.#log.info(`peerline ${this.peerId}: listening`);
    for (const [peerId, book] of this.#book) if (book.pinned) this.#ensurePinned(peerId);
  }

  /**
   * Stops every machine and the adapter. Always returns, within the drain
   * deadline plus the force-close grace: ready peers drain, the rest close,
   * and every pending request is answered (ENGINE_STOPPED if nothing else).
   * `force`, or aborting `signal` (even after the stop began, or on a later
   * call), skips what is left of the draining.
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
    const callback = this.#attachInspector(observer, 'observer');
    this.#announce(callback);
    const unsubscribe = (): void => {
      this.#inspectors.get(callback)?.unsubscribe();
      this.#inspectors.delete(callback);
    };
    return { unsubscribe, [Symbol.dispose]: unsubscribe };
  }

  /** Registers the handler for inbound streams of `protocol`. Returns the unregister function. */
  handle(protocol: string, handler: StreamHandler): () => void {
    checkProtocol('protocol', protocol, this.options.maxProtocolLength);
    checkFunction('handler', handler);
    if (protocol === RESUME_PROTOCOL) throw invalidValue('protocol', 'a protocol other than the one reserved for resumable streams', protocol);
    if (this.#handlers.has(protocol)) throw new Error(`a handler for ${protocol} is already registered`);
    this.#handlers.set(protocol, handler);
    return () => {
      if (this.#handlers.get(protocol) === handler) this.#handlers.delete(protocol);
    };
  }

  /** Adds (or replaces) a peer's addresses. A pinned peer is kept connected, reconnecting by backoff. */
  addPeer(peerId: string, addresses: readonly string[], options?: { pinned?: boolean }): void {
    checkPeerId('peerId', peerId, this.peerId);
    if (!Array.isArray(addresses)) throw invalidType('addresses', 'an array of non-empty strings', addresses);
    addresses.forEach((address, i) => checkString(`addresses[${i}]`, address));
    const { pinned: pinnedOption } = optionsObject('options', options);
    checkBoolean('options.pinned', pinnedOption);
    const pinned = pinnedOption === true;
    this.#book.set(peerId, { addresses: [...addresses], pinned });
    if (pinned && this.#status === 'running') this.#ensurePinned(peerId);
  }

  /** Forgets a peer's addresses (its live connection, if any, is not touched). */
  removePeer(peerId: string): void {
    checkString('peerId', peerId);
    this.#book.delete(peerId);
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
      const { signal, timeoutMs, resumable } = checked;
      if (resumable) {
        const link: { signal?: AbortSignal; timeoutMs?: number } = {};
        if (signal !== undefined) link.signal = signal;
        if (timeoutMs !== undefined) link.timeoutMs = timeoutMs;
        this.#resume.open(peerId, protocol, link).then(resolve, reject);
        return;
      }
      // Straight to the routing step `requests.next` leads to, without the request object and the Subject.
      try {
        this.#submit({
          peerId,
          protocol,
          kind: 'stream',
          signal,
          deadline: timeoutMs === undefined ? undefined : this.clock.now() + timeoutMs,
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
    const { signal, timeoutMs } = checkRequestOptions('options', options);
    const lease = await new Promise<LeaseValue>((resolve, reject) => {
      this.#submit({
        peerId,
        protocol: '',
        kind: 'lease',
        signal,
        deadline: timeoutMs === undefined ? undefined : this.clock.now() + timeoutMs,
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
    for (const entry of this.#entries.values()) {
      const context = entry.actor.getSnapshot().context;
      peers.push({
        peerId: entry.peerId,
        state: entry.state === 'start' ? 'connecting' : entry.state,
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
      pendingRequests: this.#pending.size,
      dialQueue: { active: this.#dialQueue.active, waiting: this.#dialQueue.waiting },
      admission: this.#admission.snapshot(),
    };
  }

  // ---------------------------------------------------------------- routing

  #route(request: StreamRequest): void {
    this.#guard('route', () => {
      if (request === null || typeof request !== 'object' || typeof request.reply !== 'function') {
        this.#metrics.internalErrors += 1;
        this.#log.warn('peerline: dropped a stream request without a reply function');
        return;
      }
      this.#submit({
        peerId: request.peerId,
        protocol: request.protocol,
        kind: 'stream',
        signal: request.signal,
        deadline: request.deadline,
        onStream: request.reply,
        onLease: undefined,
      });
    });
  }

  #submit(spec: RequestSpec): void {
    this.#metrics.total += 1;
    const pending = new Pending((this.#nextRequest++).toString(36), spec, this.#onRequestAbort, this.clock.now());
    const invalid = this.#validate(spec);
    if (invalid !== undefined) return this.#reply(pending, { ok: false, error: toPeerlineError(invalid, spec.peerId) });
    if (this.#status !== 'running') {
      const why = this.#status === 'idle' ? 'the engine is not started' : 'the engine is stopping';
      return this.#reply(pending, { ok: false, error: toPeerlineError(info('ENGINE_STOPPED', why), spec.peerId) });
    }
    if (spec.signal?.aborted) {
      return this.#reply(pending, { ok: false, error: toPeerlineError(info('ABORTED', 'the request was aborted'), spec.peerId) });
    }
    this.#pending.set(pending.id, pending);
    if (spec.deadline !== undefined) {
      const wait = Math.max(0, spec.deadline - this.clock.now());
      pending.timer = this.clock.setTimeout(
        () => this.#cancel(pending, info('STREAM_TIMEOUT', `no answer from peer ${spec.peerId} before the deadline`)),
        wait,
      );
    }
    pending.listen();
    const entry = this.#entries.get(spec.peerId) ?? this.#createEntry(spec.peerId, 'outbound');
    if (entry === undefined) {
      return this.#answer(pending.id, info('CONNECTION_LIMIT', `${this.options.maxConnections} connections are open and none is idle`));
    }
    if (entry.removed) {
      // The machine ended while starting (e.g. the dial queue refused it at once).
      const cause = entry.actor.getSnapshot().context.lastError;
      return this.#answer(pending.id, cause ?? info('CONNECTION_LOST', `peer ${spec.peerId} closed while starting`));
    }
    pending.entry = entry;
    entry.addRequest(pending.id);
    const ref: RequestRef = { id: pending.id, kind: spec.kind, protocol: spec.protocol };
    entry.actor.send({ type: 'REQUEST', request: ref });
  }

  #validate(spec: { peerId: unknown; protocol: unknown; kind: 'stream' | 'lease' }): ErrorInfo | undefined {
    if (typeof spec.peerId !== 'string' || spec.peerId.length === 0) {
      return info('INVALID_REQUEST', 'peerId must be a non-empty string');
    }
    if (spec.peerId === this.peerId) return info('INVALID_REQUEST', 'a peer cannot open a stream to itself');
    if (spec.kind === 'lease') return undefined;
    if (typeof spec.protocol !== 'string' || spec.protocol.length === 0) {
      return info('INVALID_REQUEST', 'protocol must be a non-empty string');
    }
    if (Buffer.byteLength(spec.protocol) > this.options.maxProtocolLength) {
      return info('INVALID_REQUEST', `protocol is longer than ${this.options.maxProtocolLength} bytes`);
    }
    return undefined;
  }

  /** Deadline or abort: the machine answers if it still holds the request; else we do. */
  #cancel(pending: Pending, error: ErrorInfo): void {
    this.#guard('cancel', () => {
      if (!this.#pending.has(pending.id)) return;
      const entry = pending.entry;
      if (entry !== undefined && !entry.removed) {
        entry.actor.send({ type: 'REQUEST.CANCEL', id: pending.id, error });
      }
      // A request the machine no longer holds (it is between answers) is answered here.
      if (this.#pending.has(pending.id)) this.#answer(pending.id, error);
    });
  }

  /** Answers a pending request with an error. The single place errors reach callers. */
  #answer(id: string, error: ErrorInfo): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#settle(pending);
    this.#reply(pending, { ok: false, error: toPeerlineError(error, pending.peerId) });
  }

  /**
   * Forgets a pending request: it is answered by the caller right after. The
   * record keeps listening on the caller's signal only when a stream is
   * delivered (`stream`): the signal owns the stream until it closes.
   */
  #settle(pending: Pending, stream?: Stream): void {
    this.#pending.delete(pending.id);
    pending.entry?.deleteRequest(pending.id);
    if (pending.timer !== undefined) this.clock.clearTimeout(pending.timer);
    if (stream === undefined) pending.unlisten();
    else pending.stream = stream;
  }

  #reply(pending: Pending, answer: StreamAnswer): void {
    const now = this.clock.now();
    const durationMs = now - pending.startedAt;
    if (answer.ok) {
      this.#metrics.opened += 1;
      this.#metrics.openHistogram.observe(durationMs);
    } else {
      this.#metrics.failure(answer.error.code);
    }
    if (diagnostics.streamOpen.hasSubscribers || diagnostics.requestError.hasSubscribers) this.#publishAnswer(pending, answer, durationMs, now);
    try {
      pending.onStream(answer);
    } catch (error) {
      this.#metrics.internalErrors += 1;
      this.#log.warn(`peerline: a reply callback for peer ${pending.peerId} threw`, error);
    }
  }

  #publishAnswer(pending: Pending, answer: StreamAnswer, durationMs: number, at: number): void {
    const { peerId, protocol, kind } = pending;
    const localPeerId = this.peerId;
    if (kind === 'stream' && diagnostics.streamOpen.hasSubscribers) {
      diagnostics.streamOpen.publish(
        answer.ok
          ? { localPeerId, peerId, protocol, ok: true, durationMs, at }
          : { localPeerId, peerId, protocol, ok: false, code: answer.error.code, error: answer.error, durationMs, at },
      );
    }
    if (!answer.ok && diagnostics.requestError.hasSubscribers) {
      diagnostics.requestError.publish({ localPeerId, peerId, protocol, kind, code: answer.error.code, error: answer.error, durationMs, at });
    }
  }

  // --------------------------------------------------------------- registry

  #createEntry(peerId: string, direction: 'outbound' | 'inbound', connection?: Connection): Entry | undefined {
    if (!this.#admit()) return undefined;
    const book = this.#book.get(peerId);
    const pinned = book?.pinned ?? false;
    const entry = new Entry(peerId, this.#host, (this.#actorSystem ??= this.#newActorSystem()));
    this.#entries.set(peerId, entry);
    if (connection !== undefined) this.#attach(entry, connection);
    entry.actor = createRootActor(this.#machine, entry, {
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
          heartbeatMisses: this.options.heartbeat.misses,
          maxAttempts: maxAttempts(this.options.retry),
        }),
        ...(connection === undefined ? {} : { connectionId: connection.id }),
      },
    });
    entry.actor.start();
    if (entry.state === 'start' && !entry.removed) this.#observe(entry, entry.actor.getSnapshot().value, 'xstate.init');
    return entry;
  }

  /** Room for one more machine? At the limit, an idle unpinned peer is pruned to make room. */
  #admit(): boolean {
    if (this.#entries.size < this.options.maxConnections) return true;
    for (const entry of this.#entries.values()) {
      const snapshot = entry.actor.getSnapshot();
      if (!snapshot.context.pinned && snapshot.matches({ ready: { idle: 'idle' } })) {
        entry.actor.send({ type: 'PRUNE' });
        return true;
      }
    }
    return false;
  }

  #ensurePinned(peerId: string): void {
    if (this.#entries.has(peerId)) return;
    this.#createEntry(peerId, 'outbound');
  }

  /** Removes a machine from the registry, exactly once, on every exit path. */
  #remove(entry: Entry, leftover: ErrorInfo = info('CONNECTION_LOST', 'connection closed')): void {
    if (entry.removed) return;
    entry.removed = true;
    if (this.#entries.get(entry.peerId) === entry) this.#entries.delete(entry.peerId);
    if (entry.state !== 'start') this.#metrics.peers[entry.state] -= 1;
    this.#guard('stop actor', () => stopRootActor(entry.actor));
    for (const connection of entry.takeConnections()) {
      this.#guard('close', () => connection.close(ConnectionErrorCode.Abandoned, reasonFor(ConnectionErrorCode.Abandoned)));
    }
    for (const record of entry.takeOpens()) {
      record.controller.abort();
      record.stream?.abort('connection closed');
    }
    for (const incoming of entry.takeInbound()) this.#guard('reject', () => incoming.reject('connection closed'));
    // The machine answers everything it holds; anything left is answered here.
    for (const id of entry.requestIds()) this.#answer(id, leftover);
    for (const resolve of entry.takeWaiters()) resolve();
    if (this.#entries.size === 0) this.#onEmpty?.();
  }

  #signal(peerId: string, event: ConnectionEvent): Promise<void> {
    const entry = this.#entries.get(peerId);
    if (entry === undefined) return Promise.resolve();
    return new Promise<void>((resolve) => {
      entry.addWaiter(resolve);
      entry.actor.send(event);
    });
  }

  #newActorSystem(): SharedActorSystem<Entry> {
    const system = new SharedActorSystem<Entry>({
      clock: this.clock,
      hosts: () => this.#entries.values(),
      microstep: (entry, actorRef, snapshot, eventType) => {
        if (actorRef === entry.actor) this.#observe(entry, (snapshot as { value: unknown }).value, eventType);
      },
      // The machine reached its final state, or failed: either way its entry goes.
      hostEvent: (entry, event) => {
        if (event.type.startsWith('xstate.error.actor')) {
          this.#metrics.internalErrors += 1;
          this.#log.error(`peerline: machine for peer ${entry.peerId} failed`, event.error);
        } else if (!event.type.startsWith('xstate.done.actor')) {
          return;
        }
        this.#remove(entry);
      },
    });
    for (const callback of this.#inspectors.keys()) this.#inspectors.set(callback, system.inspect(callback));
    return system;
  }

  /** Checks `observer` and registers it (with the actor system, now or when it is made); returns its guarded callback. */
  #attachInspector(observer: InspectionObserver, name: string): (event: InspectionEvent) => void {
    const next = inspectionCallback(name, observer);
    const callback = (event: InspectionEvent): void => this.#guard('inspect', () => next(event));
    this.#inspectors.set(callback, this.#actorSystem?.inspect(callback));
    return callback;
  }

  /** Tells a newly attached inspector about every machine already running, as XState would have at their start. */
  #announce(callback: (event: InspectionEvent) => void): void {
    for (const entry of this.#entries.values()) {
      const actor = entry.actor as AnyActorRef | undefined;
      if (entry.removed || actor === undefined) continue;
      const rootId = actor.sessionId;
      const snapshot = actor.getSnapshot() as { children?: Record<string, AnyActorRef | undefined> };
      callback({ type: '@xstate.actor', actorRef: actor, rootId });
      callback({ type: '@xstate.snapshot', actorRef: actor, rootId, snapshot: snapshot as never, event: INSPECT_ATTACHED_EVENT });
      for (const child of Object.values(snapshot.children ?? {})) {
        if (child !== undefined) callback({ type: '@xstate.actor', actorRef: child, rootId });
      }
    }
  }

  #observe(entry: Entry, value: unknown, eventType: string): void {
    const to = topState(value);
    const from = entry.state;
    if (to === from || to === 'start') return;
    entry.state = to;
    if (from !== 'start') this.#metrics.peers[from] -= 1;
    this.#metrics.peers[to] += 1;
    this.#metrics.transitions += 1;
    if (from === 'errored' && to === 'connecting') this.#metrics.retries += 1;
    const transition: Transition = {
      peerId: entry.peerId,
      from: from === 'start' ? null : from,
      to,
      // The first state is the machine's creation, whatever step revealed it.
      event: from === 'start' ? 'xstate.init' : eventType,
      at: this.clock.now(),
    };
    if (this.#log.tracing) {
      this.#log.trace(`peerline ${this.peerId} peer ${entry.peerId}: ${transition.from ?? "new"} -> ${to} (${transition.event})`);
    }
    if (to === 'ready') this.#resume.peerReady(entry.peerId);
    if (this.#transitions.observed) this.#transitions.next(transition);
    if (diagnostics.transition.hasSubscribers) diagnostics.transition.publish({ localPeerId: this.peerId, ...transition });
  }

  // ------------------------------------------------------------- transport

  #onConnection(connection: Connection): void {
    if (this.#status !== 'running') return connection.close(ConnectionErrorCode.Shutdown, reasonFor(ConnectionErrorCode.Shutdown));
    // Admission control: checked here unless the adapter already did; tracked either way.
    const admitted = this.#admission.admit(connection, this.#adapter.enforcesAdmission !== true);
    if (admitted === undefined) return;
    if (admitted instanceof Promise) {
      void admitted.then((tracked) => {
        if (tracked !== undefined) this.#guard('inbound connection', () => this.#adopt(tracked));
      });
      return;
    }
    this.#adopt(admitted);
  }

  /** An admitted inbound connection joins its peer's machine, or a new one. */
  #adopt(connection: Connection): void {
    const closeWith = (code: ConnectionErrorCode): void => connection.close(code, reasonFor(code));
    if (this.#status !== 'running') return closeWith(ConnectionErrorCode.Shutdown);
    const peerId = connection.remotePeerId;
    const entry = this.#entries.get(peerId);
    if (entry !== undefined) {
      // A connection that closed before it got here is not offered to the machine.
      if (this.#attach(entry, connection).closed === undefined) entry.actor.send({ type: 'CONNECTION.INBOUND', connectionId: connection.id });
      return;
    }
    if (this.#createEntry(peerId, 'inbound', connection) === undefined) this.#admission.refuse(connection, ConnectionErrorCode.ConnectionLimit);
  }

  /**
   * Hands the connection's events to `entry`. Events that came before are
   * delivered now, a close among them: the link says so (`closed`).
   */
  #attach(entry: Entry, connection: Connection): Link {
    entry.addConnection(connection);
    const link = new Link(entry, connection);
    connection.setHandlers(link);
    return link;
  }

  #onClose(entry: Entry, connection: Connection, close: CloseInfo): void {
    entry.deleteConnection(connection.id);
    if (entry.removed) return;
    entry.actor.send({
      type: 'CONNECTION.CLOSED',
      connectionId: connection.id,
      code: close.code,
      error: close.error,
      reason: close.reason,
    });
  }

  #onControl(entry: Entry, connection: Connection, message: ControlMessage): void {
    if (entry.removed) return;
    const connectionId = connection.id;
    const m = message as Partial<Record<string, unknown>> & { type?: unknown };
    switch (m.type) {
      case 'hello':
      case 'hello-ack':
        if (typeof m.version !== 'number' || typeof m.peerId !== 'string') break;
        entry.actor.send({
          type: m.type === 'hello' ? 'CONTROL.HELLO' : 'CONTROL.HELLO_ACK',
          connectionId,
          version: m.version,
          peerId: m.peerId,
        });
        return;
      case 'ping':
      case 'pong':
        if (typeof m.seq !== 'number') break;
        if (m.type === 'pong' && entry.pingSentAt !== undefined) {
          const at = this.clock.now();
          const rttMs = at - entry.pingSentAt;
          this.#metrics.rtt(rttMs);
          entry.pingSentAt = undefined;
          if (diagnostics.heartbeat.hasSubscribers) diagnostics.heartbeat.publish({ localPeerId: this.peerId, peerId: entry.peerId, rttMs, at });
        }
        entry.actor.send({ type: m.type === 'ping' ? 'CONTROL.PING' : 'CONTROL.PONG', connectionId, seq: m.seq });
        return;
      case 'goaway':
        entry.actor.send({ type: 'CONTROL.GOAWAY', connectionId });
        return;
    }
    // Malformed control traffic: a protocol violation ends that connection, nothing else.
    connection.close(ConnectionErrorCode.ProtocolViolation, reasonFor(ConnectionErrorCode.ProtocolViolation));
  }

  #onStream(entry: Entry, connection: Connection, incoming: IncomingStream): void {
    if (entry.removed) return incoming.reject('connection closed');
    if (typeof incoming.protocol !== 'string' || Buffer.byteLength(incoming.protocol) > this.options.maxProtocolLength) {
      this.#metrics.inboundRejected += 1;
      return incoming.reject('protocol name too long');
    }
    const streamId = `${connection.id}/${entry.streamSeq++}`;
    entry.setInbound(streamId, incoming);
    entry.actor.send({ type: 'STREAM.INBOUND', connectionId: connection.id, streamId, protocol: incoming.protocol });
  }

  async #dial(peerId: string, signal: AbortSignal): Promise<DialOutput> {
    const entry = this.#entries.get(peerId);
    if (entry === undefined || entry.removed) throw info('CONNECTION_LOST', `peer ${peerId} is gone`);
    const addresses = this.#book.get(peerId)?.addresses ?? [];
    if (addresses.length === 0) throw info('NO_ADDRESS', `no address known for peer ${peerId}`);
    this.#metrics.dialsStarted += 1;
    const startedAt = this.clock.now();
    let connection: Connection;
    try {
      connection = await this.#race(peerId, addresses, signal);
    } catch (error) {
      this.#metrics.dialsFailed += 1;
      throw this.#dialFailed(peerId, addresses, startedAt, transportErrorInfo(error, 'dial'));
    }
    if (signal.aborted || entry.removed) {
      // The machine stopped waiting (timeout, shutdown): nobody will adopt it.
      connection.close(ConnectionErrorCode.Abandoned, reasonFor(ConnectionErrorCode.Abandoned));
      throw this.#dialFailed(peerId, addresses, startedAt, info('CONNECT_TIMEOUT', 'dial finished after it was abandoned'));
    }
    const closed = this.#attach(entry, connection).closed;
    if (closed !== undefined) {
      // It closed as it came up (the remote refused it at once, say): the close reached the machine
      // before the connection did, so the dial fails with the close's reason.
      this.#metrics.dialsFailed += 1;
      throw this.#dialFailed(peerId, addresses, startedAt, closedError(closed));
    }
    if (diagnostics.dial.hasSubscribers) {
      const at = this.clock.now();
      const connectionId = connection.id;
      diagnostics.dial.publish({ localPeerId: this.peerId, peerId, addresses, ok: true, connectionId, durationMs: at - startedAt, at });
    }
    return { connectionId: connection.id };
  }

  /** Logs and publishes a failed dial; returns its error for the machine. */
  #dialFailed(peerId: string, addresses: readonly string[], startedAt: number, error: ErrorInfo): ErrorInfo {
    if (this.#log.enabled('debug')) this.#log.debug(`peerline ${this.peerId}: dial to ${peerId} failed: ${error.code} ${error.message}`);
    if (diagnostics.dial.hasSubscribers) {
      const at = this.clock.now();
      const { code, message } = error;
      diagnostics.dial.publish({ localPeerId: this.peerId, peerId, addresses, ok: false, code, message, durationMs: at - startedAt, at });
    }
    return error;
  }

  /** Dials every address at once; the first connection wins, the rest are aborted or closed. */
  #race(peerId: string, addresses: readonly string[], signal: AbortSignal): Promise<Connection> {
    if (addresses.length === 1) {
      // Nothing to race: the adapter takes the machine's signal itself, without a
      // controller and a listener per dial. It settles on the same turn as a race.
      let attempt: Promise<Connection>;
      try {
        attempt = this.#adapter.dial(peerId, addresses[0]!, { signal });
      } catch (error) {
        attempt = Promise.reject(error);
      }
      return attempt.then((connection) => connection);
    }
    return new Promise<Connection>((resolve, reject) => {
      let winner: Connection | undefined;
      let left = addresses.length;
      const errors: unknown[] = [];
      const controllers = addresses.map(() => new AbortController());
      const abortAll = (): void => controllers.forEach((c) => c.abort());
      signal.addEventListener('abort', abortAll, { once: true });
      addresses.forEach((address, i) => {
        let attempt: Promise<Connection>;
        try {
          attempt = this.#adapter.dial(peerId, address, { signal: controllers[i]!.signal });
        } catch (error) {
          attempt = Promise.reject(error);
        }
        attempt.then(
          (connection) => {
            if (winner !== undefined) {
              connection.close(ConnectionErrorCode.Abandoned, reasonFor(ConnectionErrorCode.Abandoned));
              return;
            }
            winner = connection;
            signal.removeEventListener('abort', abortAll);
            controllers.forEach((c, j) => j !== i && c.abort());
            resolve(connection);
          },
          (error: unknown) => {
            errors.push(error);
            left -= 1;
            if (left === 0 && winner === undefined) {
              signal.removeEventListener('abort', abortAll);
              // An identity mismatch says more than a refusal from another address.
              const mismatch = errors.find((e) => e instanceof TransportError && e.kind === 'identity-mismatch');
              reject(mismatch ?? errors[0]);
            }
          },
        );
      });
    });
  }

  // ------------------------------------------------------------- effects

  #entryOf(peerId: string): Entry | undefined {
    const entry = this.#entries.get(peerId);
    return entry === undefined || entry.removed ? undefined : entry;
  }

  #provide(): ConnectionMachine {
    const o = this.options;
    const effect =
      <P>(name: string, fn: (entry: Entry, params: P) => void) =>
      ({ context }: { context: { peerId: string } }, params: P): void => {
        try {
          const entry = this.#entryOf(context.peerId);
          if (entry !== undefined) fn(entry, params);
        } catch (error) {
          this.#failed(name, error);
        }
      };
    return connectionMachine.provide({
      actions: {
        answer: (_args, { id, error }) => {
          try {
            this.#answer(id, error);
          } catch (failure) {
            this.#failed('answer', failure);
          }
        },
        deliverStream: effect('deliverStream', (entry, { id }: { id: string }) => this.#deliver(entry, id)),
        grantLease: effect('grantLease', (entry, { id, connectionId }: { id: string; connectionId: string }) =>
          this.#grantLease(entry, id, connectionId),
        ),
        openStream: effect('openStream', (entry, params: { id: string; protocol: string; connectionId: string }) =>
          this.#openStream(entry, params),
        ),
        abortOpen: effect('abortOpen', (entry, { id }: { id: string }) => this.#abortOpen(entry, id)),
        discardStream: effect('discardStream', (entry, { id }: { id: string }) => this.#abortOpen(entry, id)),
        acceptInbound: effect('acceptInbound', (entry, params: { streamId: string; connectionId: string }) =>
          this.#acceptInbound(entry, params.streamId, params.connectionId),
        ),
        rejectInbound: effect('rejectInbound', (entry, { streamId, reason }: { streamId: string; reason: string }) => {
          const incoming = entry.inbound(streamId);
          entry.deleteInbound(streamId);
          this.#metrics.inboundRejected += 1;
          incoming?.reject(reason);
        }),
        rejectConnection: effect('rejectConnection', (entry, p: { connectionId: string; code: ConnectionErrorCode }) =>
          this.#closeConnection(entry, p.connectionId, p.code),
        ),
        closeConnection: effect('closeConnection', (entry, p: { connectionId: string; code: ConnectionErrorCode }) =>
          this.#closeConnection(entry, p.connectionId, p.code),
        ),
        sendControl: effect('sendControl', (entry, p: { connectionId: string; message: ControlMessage }) => {
          if (p.message.type === 'ping') entry.pingSentAt = this.clock.now();
          entry.connection(p.connectionId)?.sendControl(p.message);
        }),
      },
      guards: {
        hasHandler: (_args, { protocol }) => this.#handlers.has(protocol),
      },
      actors: {
        dialSlot: fromCallback<ConnectionEvent, { peerId: string }>(({ sendBack }) =>
          this.#dialQueue.acquire(
            () => sendBack({ type: 'DIAL.SLOT' }),
            () => sendBack({ type: 'DIAL.QUEUE_FULL' }),
          ),
        ),
        dial: fromPromise<DialOutput, { peerId: string }>(({ input, signal }) => this.#dial(input.peerId, signal)),
      },
      delays: {
        dialQueueTimeout: o.dialQueueTimeoutMs,
        connectTimeout: o.connectTimeoutMs,
        handshakeTimeout: o.handshakeTimeoutMs,
        streamOpenTimeout: o.streamOpenTimeoutMs,
        heartbeatInterval: o.heartbeat.intervalMs,
        heartbeatTimeout: o.heartbeat.timeoutMs,
        heartbeatGap: o.heartbeat.intervalMs - o.heartbeat.timeoutMs,
        idleTimeout: o.idleTimeoutMs,
        drainDeadline: o.drainDeadlineMs,
        forceCloseGrace: o.forceCloseGraceMs,
        retryBackoff: ({ context }) =>
          backoffDelay(context.pinned ? o.pinnedRetry : o.retry, context.attempts, this.#random),
      },
    });
  }

  #openStream(entry: Entry, params: { id: string; protocol: string; connectionId: string }): void {
    const controller = new AbortController();
    const record: OpenRecord = { controller, connectionId: params.connectionId, stream: null };
    entry.setOpen(params.id, record);
    const connection = entry.connection(params.connectionId);
    let attempt: Promise<Stream>;
    try {
      attempt =
        connection === undefined
          ? Promise.reject(new TransportError('closed', 'connection is closed'))
          : connection.openStream(params.protocol, { signal: controller.signal });
    } catch (error) {
      attempt = Promise.reject(error);
    }
    attempt.then(
      (stream) => {
        try {
          if (entry.open(params.id) !== record || controller.signal.aborted || entry.removed) {
            stream.abort('no longer wanted');
            return;
          }
          record.stream = stream;
          entry.actor.send({ type: 'STREAM.OPENED', id: params.id });
        } catch (error) {
          this.#failed('stream opened', error);
        }
      },
      (error: unknown) => {
        try {
          if (entry.open(params.id) !== record || entry.removed) return;
          entry.deleteOpen(params.id);
          entry.actor.send({ type: 'STREAM.OPEN_FAILED', id: params.id, error: transportErrorInfo(error, 'stream') });
        } catch (failure) {
          this.#failed('stream failed', failure);
        }
      },
    );
  }

  #abortOpen(entry: Entry, id: string): void {
    const record = entry.open(id);
    if (record === undefined) return;
    entry.deleteOpen(id);
    record.controller.abort();
    record.stream?.abort('aborted');
  }

  #deliver(entry: Entry, id: string): void {
    const record = entry.open(id);
    entry.deleteOpen(id);
    const pending = this.#pending.get(id);
    const stream = record?.stream;
    if (stream === null || stream === undefined || pending === undefined) {
      stream?.abort('request already answered');
      if (pending !== undefined) this.#answer(id, info('CONNECTION_LOST', 'stream vanished before delivery'));
      this.#metrics.internalErrors += 1;
      // The machine counted the stream open when it asked for delivery: give the credit back.
      if (record !== undefined) this.#streamClosed(entry, record.connectionId, false);
      return;
    }
    // After delivery the signal still owns the stream: aborting it aborts the stream (see `Pending`).
    this.#settle(pending, stream);
    const peerStream = wrapStream(stream, entry.peerId, 'outbound');
    const connectionId = record!.connectionId;
    void stream.closed.then(() => {
      try {
        pending.stream = undefined;
        pending.unlisten();
        this.#streamClosed(entry, connectionId, false);
      } catch (error) {
        this.#failed('stream closed', error);
      }
    });
    this.#reply(pending, { ok: true, stream: peerStream });
  }

  /**
   * A stream of `entry` closed. The machine hears of it once per turn: the
   * closes of one turn (a burst of streams ending together) go in one
   * STREAM.CLOSED event with their count, on the next microtask.
   */
  #streamClosed(entry: Entry, connectionId: string, inbound: boolean): void {
    if (entry.removed) return;
    if (entry.addClosed(connectionId, inbound)) queueMicrotask(() => this.#flushClosed(entry));
  }

  #flushClosed(entry: Entry): void {
    try {
      for (const closed of entry.takeClosed()) {
        if (entry.removed) return;
        entry.actor.send({ type: 'STREAM.CLOSED', connectionId: closed.connectionId, inbound: closed.inbound, count: closed.count });
      }
    } catch (error) {
      this.#failed('stream closed', error);
    }
  }

  #grantLease(entry: Entry, id: string, connectionId: string): void {
    const pending = this.#pending.get(id);
    if (pending === undefined || pending.onLease === undefined) {
      if (!entry.removed) entry.actor.send({ type: 'LEASE.RELEASE', connectionId });
      return;
    }
    this.#settle(pending);
    this.#metrics.leases += 1;
    let released = false;
    const peerId = entry.peerId;
    const connection: LeasedConnection = {
      peerId,
      openStream: (protocol, options) => this.openStream(peerId, protocol, options),
    };
    const release = (): void => {
      if (released) return;
      released = true;
      if (!entry.removed) entry.actor.send({ type: 'LEASE.RELEASE', connectionId });
    };
    try {
      pending.onLease({ connection, release });
    } catch (error) {
      this.#metrics.internalErrors += 1;
      this.#log.warn('peerline: a lease callback threw', error);
      release();
    }
  }

  #acceptInbound(entry: Entry, streamId: string, connectionId: string): void {
    const incoming = entry.inbound(streamId);
    entry.deleteInbound(streamId);
    const handler = incoming === undefined ? undefined : this.#handlers.get(incoming.protocol);
    if (incoming === undefined || handler === undefined) {
      incoming?.reject('no handler');
      // The machine counted it open; it never was.
      entry.actor.send({ type: 'STREAM.CLOSED', connectionId, inbound: true });
      return;
    }
    const stream = incoming.accept();
    this.#metrics.inboundAccepted += 1;
    void stream.closed.then(() => {
      try {
        this.#streamClosed(entry, connectionId, true);
      } catch (error) {
        this.#failed('stream closed', error);
      }
    });
    const peerStream = wrapStream(stream, entry.peerId, 'inbound');
    const failed = (error: unknown): void => {
      this.#metrics.handlerErrors += 1;
      this.#log.warn(`peerline: handler for ${incoming.protocol} failed`, error);
      stream.abort('handler failed');
    };
    // Run the handler outside the machine's step; its failure (thrown or rejected) aborts the stream only.
    queueMicrotask(() => {
      try {
        const result = handler(peerStream);
        if (result !== undefined && result !== null && typeof (result as Promise<void>).then === 'function') {
          (result as Promise<void>).then(undefined, failed);
        }
      } catch (error) {
        failed(error);
      }
    });
  }

  #closeConnection(entry: Entry, connectionId: string, code: ConnectionErrorCode): void {
    const connection = entry.deleteConnection(connectionId);
    if (connection === undefined) return;
    connection.close(code, reasonFor(code));
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
    // Resumable streams end first: nothing would resume them now.
    this.#guard('stop resumable streams', () => this.#resume.stop());
    // No dial slot is granted from now on: a peer waiting for one closes instead.
    this.#dialQueue.close();
    const shutdown = (force: boolean): void => {
      for (const entry of [...this.#entries.values()]) {
        this.#guard('shutdown', () => entry.actor.send({ type: 'SHUTDOWN', force }));
      }
    };
    shutdown(this.#forced);
    if (this.#entries.size > 0) {
      // Bounded: ready peers drain until the deadline, then force close and
      // wait the grace; every other state closes at once.
      let timer: unknown;
      await new Promise<void>((resolve) => {
        this.#onEmpty = resolve;
        const grace = this.options.forceCloseGraceMs + 1;
        timer = this.clock.setTimeout(resolve, (this.#forced ? 0 : this.options.drainDeadlineMs) + grace);
        // Forced while draining: close what is left now, and wait only the grace.
        this.#escalate = () => {
          shutdown(true);
          this.clock.clearTimeout(timer);
          if (this.#onEmpty !== undefined) timer = this.clock.setTimeout(resolve, grace);
        };
      });
      this.clock.clearTimeout(timer);
      this.#onEmpty = undefined;
      this.#escalate = undefined;
    }
    for (const entry of [...this.#entries.values()]) this.#remove(entry, info('ENGINE_STOPPED', 'the engine stopped'));
    for (const id of [...this.#pending.keys()]) this.#answer(id, info('ENGINE_STOPPED', 'the engine stopped'));
    await this.#closeAdapter();
    this.#stopped();
    this.#log.info(`peerline ${this.peerId}: stopped`);
  }

  /** Closes the adapter, waiting for it at most the force-close grace. */
  async #closeAdapter(): Promise<void> {
    let timer: unknown;
    await Promise.race([
      this.#adapter.close().catch((error: unknown) => this.#log.warn('peerline: adapter close failed', error)),
      new Promise<void>((resolve) => {
        timer = this.clock.setTimeout(resolve, this.options.forceCloseGraceMs);
      }),
    ]);
    this.clock.clearTimeout(timer);
  }

  #stopped(): void {
    this.#status = 'stopped';
    // `requests` stays open: a request after stop() is answered ENGINE_STOPPED.
    this.#transitions.complete();
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
