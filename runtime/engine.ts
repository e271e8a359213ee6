import './dispose.js';
import { Subject, type Observable, type Observer } from 'rxjs';
import { fromCallback, fromPromise, type Actor, type AnyActorRef, type InspectionEvent, type Subscription } from 'xstate';
import { checkBoolean, checkFunction, checkNumber, checkObject, checkOptionalString, checkString, invalidType, invalidValue, optionsObject } from '../adapters/arguments.js';
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
import { canRetry, closedError, connectionMachine, type ConnectionMachine } from '../machines/connection-machine.js';
import { ConnectionErrorCode, reasonFor, type ErrorCode, type ErrorInfo } from '../machines/codes.js';
import type { ConnectionEvent, ConnectionLimits, ConnectionState, DialOutput, RequestRef } from '../machines/types.js';
import { Admission, type AdmissionSnapshot } from './admission.js';
import { diagnostics } from './diagnostics.js';
import { envFlag, levelled, stderrLogger, type LevelledLogger, type Logger, type LogLevel } from './logger.js';
import { systemClock, type Random } from './clock.js';
import { SharedActorSystem, createRootActor, stopRootActor } from './actor-system.js';
import { DialQueue } from './dial-queue.js';
import { Entry, Link, type EntryHost, type OpenRecord } from './entry.js';
import { EngineHeartbeats, type HeartbeatView } from './heartbeat.js';
import { DEFAULTS, maxAttempts, resolveOptions, type EngineInit, type EngineOptions } from './defaults.js';
import { listenAbort, unlistenAbort } from './abort.js';
import { PeerStates } from './peer-states.js';
import { ProtocolLimits, STREAM_LIMIT_REASON, validateHandlerOptions, type HandlerOptions } from './protocol-limits.js';
import { rankAddresses, staggeredDial } from './staggered-dial.js';
import { PruneIndex, type PrunableKind } from './prune-index.js';
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
import { backoffDelay, pinnedMaxAttempts } from './retry.js';
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

/** A peer's pruning priority: tag values (summed) and protection. Kept per peer id, whether it is connected or not. */
interface PeerPriority {
  readonly tags: Map<string, number>;
  protected: boolean;
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
    listenAbort(this.signal, this);
  }

  unlisten(): void {
    if (!this.listening) return;
    this.listening = false;
    unlistenAbort(this.signal!, this);
  }
}

/** What a request is, as `#submit` takes it. */
interface RequestSpec {
  readonly peerId: string;
  readonly protocol: string;
  readonly kind: 'stream' | 'lease';
  readonly signal: AbortSignal | undefined;
  readonly deadline: number | undefined;
  /** Wait through backoff and retries instead of failing at once (`OpenStreamOptions.waitForReady`). */
  readonly waitForReady: boolean;
  readonly onStream: (answer: StreamAnswer) => void;
  readonly onLease: ((value: LeaseValue) => void) | undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function info(code: ErrorCode, message: string, closeCode?: ConnectionErrorCode): ErrorInfo {
  return closeCode === undefined ? { code, message } : { code, message, closeCode };
}

/** Whether a machine in this state may be pruned, and how (see prune-index.ts). */
function prunableKind(value: unknown, context: { pinned: boolean; queue: readonly unknown[] }): PrunableKind | undefined {
  if (value === 'errored') return !context.pinned && context.queue.length === 0 ? 'errored' : undefined;
  if (typeof value === 'object' && value !== null && (value as { ready?: string }).ready === 'idle') return 'idle';
  return undefined;
}

function topState(value: unknown): ConnectionState | 'start' {
  if (typeof value === 'string') return value as ConnectionState;
  // The first key, without the array Object.keys makes: this runs on every microstep.
  for (const key in value as object) return key as ConnectionState;
  return 'start';
}

/** Maps a transport failure to the error a request or a machine ends with. */
export function transportErrorInfo(error: unknown, during: 'dial' | 'stream'): ErrorInfo {
  // A per-protocol limit of the remote's handler: retry later, not a protocol it refuses.
  if (error instanceof TransportError && error.kind === 'rejected' && error.message.startsWith(STREAM_LIMIT_REASON)) {
    return info('STREAM_LIMIT', error.message);
  }
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
  /**
   * Every peer with a machine and its state: the current map at once on
   * subscribe, then a new one after each turn in which something changed;
   * completes when the engine stops.
   */
  readonly peers$: Observable<ReadonlyMap<string, ConnectionState>>;

  readonly #adapter: Adapter;
  readonly #random: Random;
  readonly #log: LevelledLogger;
  /** Attached inspection callbacks (guarded), with their subscription to the actor system once it exists. */
  readonly #inspectors = new Map<(event: InspectionEvent) => void, Subscription | undefined>();
  readonly #metrics = new Metrics();
  /** The heartbeats of every `ready` machine, on one clock timer. */
  readonly #heartbeats: EngineHeartbeats;
  readonly #machine: ConnectionMachine;
  readonly #dialQueue: DialQueue;
  readonly #entries = new Map<string, Entry>();
  readonly #pending = new Map<string, Pending>();
  readonly #handlers = new Map<string, StreamHandler>();
  readonly #book = new Map<string, { addresses: string[]; pinned: boolean }>();
  /** Pruning priorities by peer id (tags, protection); only peers that have some. */
  readonly #priorities = new Map<string, PeerPriority>();
  readonly #protocolLimits: ProtocolLimits;
  /** Peers that may be pruned at maxConnections, kept as their machines change state. */
  readonly #prunable = new PruneIndex<Entry>((peerId) => this.#priorityValue(peerId));
  readonly #peerStates: PeerStates;
  /** Above 0 while a request is being submitted: answers given meanwhile wait for a microtask (never synchronous). */
  #submitting = 0;
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
      throw invalidValue('config.pinnedRetry.strategy', 'a backoff strategy: pinned peers reconnect by backoff', 'none');
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
    this.#protocolLimits = new ProtocolLimits(() => this.clock.now());
    this.#peerStates = new PeerStates({
      stateOf: (peerId) => {
        const entry = this.#entryOf(peerId);
        return entry === undefined || entry.state === 'start' ? undefined : entry.state;
      },
      states: () => this.#liveStates(),
    });
    this.peers$ = this.#peerStates.peers$;
    this.#heartbeats = new EngineHeartbeats({
      clock: this.clock,
      timing: this.options.heartbeat,
      localPeerId: this.peerId,
      metrics: this.#metrics,
      failed: (what, error) => this.#failed(what, error),
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

  /**
   * @internal For tests and the simulator: what the heartbeat of a `ready`
   * peer is doing (undefined when it has none), and when the engine's one
   * heartbeat timer fires. Not part of the public API.
   */
  static heartbeatOf(engine: Engine, peerId: string): (HeartbeatView & { readonly armedAt: number }) | undefined {
    const entry = engine.#entries.get(peerId);
    return entry === undefined ? undefined : engine.#heartbeats.view(entry);
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
    const callback = this.#attachInspector(observer, 'observer');
    this.#announce(callback);
    const unsubscribe = (): void => {
      this.#inspectors.get(callback)?.unsubscribe();
      this.#inspectors.delete(callback);
    };
    return { unsubscribe, [Symbol.dispose]: unsubscribe };
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
    const entry = this.#entryOf(peerId);
    if (entry !== undefined && entry.actor.getSnapshot().context.pinned !== pinned) {
      entry.actor.send({ type: 'PIN', pinned });
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
    this.#priorities.delete(peerId);
    this.#reprioritize(peerId);
    const entry = this.#entryOf(peerId);
    if (entry !== undefined && entry.actor.getSnapshot().context.pinned) entry.actor.send({ type: 'PIN', pinned: false });
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
    this.#priorityOf(peerId).tags.set(tag, value);
    this.#reprioritize(peerId);
  }

  /** Removes a peer's tag. */
  untagPeer(peerId: string, tag: string): void {
    checkString('peerId', peerId);
    checkString('tag', tag);
    const priority = this.#priorities.get(peerId);
    if (priority === undefined) return;
    priority.tags.delete(tag);
    if (priority.tags.size === 0 && !priority.protected) this.#priorities.delete(peerId);
    this.#reprioritize(peerId);
  }

  /** A protected peer is never pruned to make room (it may still close when idle). */
  protectPeer(peerId: string, on = true): void {
    checkString('peerId', peerId);
    checkBoolean('on', on);
    if (on) {
      this.#priorityOf(peerId).protected = true;
    } else {
      const priority = this.#priorities.get(peerId);
      if (priority === undefined) return;
      priority.protected = false;
      if (priority.tags.size === 0) this.#priorities.delete(peerId);
    }
    this.#reprioritize(peerId);
  }

  #reprioritize(peerId: string): void {
    const entry = this.#entryOf(peerId);
    if (entry !== undefined) this.#prunable.refresh(entry);
  }

  /** The sum of a peer's tags and its protection, for the prune index. */
  #priorityValue(peerId: string): { value: number; protected: boolean } | undefined {
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
    for (const entry of this.#entries.values()) {
      if (!entry.removed && this.#heartbeats.probe(entry)) probed += 1;
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
        this.#submit({
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
    const lease = await new Promise<LeaseValue>((resolve, reject) => {
      this.#submit({
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
        waitForReady: request.waitForReady === true,
        onStream: request.reply,
        onLease: undefined,
      });
    });
  }

  #submit(spec: RequestSpec): void {
    // An answer given while this runs (invalid, stopped, QUEUE_FULL, backing
    // off) is delivered on a microtask: never synchronously from requests.next().
    this.#submitting += 1;
    try {
      this.#submitNow(spec);
    } finally {
      this.#submitting -= 1;
    }
  }

  #submitNow(spec: RequestSpec): void {
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
    const ref: RequestRef = spec.waitForReady
      ? { id: pending.id, kind: spec.kind, protocol: spec.protocol, waitForReady: true }
      : { id: pending.id, kind: spec.kind, protocol: spec.protocol };
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
    if (this.#submitting > 0) {
      queueMicrotask(() => this.#call(pending, answer));
      return;
    }
    this.#call(pending, answer);
  }

  #call(pending: Pending, answer: StreamAnswer): void {
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
          maxAttempts: maxAttempts(this.options.retry),
          pinnedMaxAttempts: pinnedMaxAttempts(this.options.pinnedRetry),
          maxRestarts: this.options.pinnedRestartIntensity.maxRestarts,
          dialBackoff: this.options.dialBackoff.strategy !== 'none',
        }),
        ...(connection === undefined ? {} : { connectionId: connection.id }),
      },
    });
    entry.actor.start();
    if (entry.state === 'start' && !entry.removed) this.#observe(entry, entry.actor.getSnapshot().value, 'xstate.init');
    return entry;
  }

  /**
   * Room for one more machine? At the limit one peer is pruned to make room:
   * a peer backing off (`errored`) with nobody waiting for it first, else
   * the idle `ready` peer with the lowest priority (the sum of its tags), the
   * one idle the longest (least recently used) among equals. Pinned and
   * protected peers never are. See prune-index.ts.
   */
  #admit(): boolean {
    if (this.#entries.size < this.options.maxConnections) return true;
    const victim = this.#prunable.pick();
    if (victim === undefined) return false;
    // Out of the index now: a second admission in the same step must not pick it again.
    this.#prunable.remove(victim);
    this.#metrics.pruned += 1;
    victim.actor.send({ type: 'PRUNE' });
    return true;
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
    // A machine stopped while `ready` runs no exit action: its heartbeat stops here.
    this.#heartbeats.stop(entry);
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
    this.#prunable.remove(entry);
    this.#peerStates.ended(entry.peerId);
    if (this.#entries.size === 0) this.#onEmpty?.();
  }

  *#liveStates(): Iterable<readonly [string, ConnectionState]> {
    for (const entry of this.#entries.values()) {
      if (!entry.removed && entry.state !== 'start') yield [entry.peerId, entry.state];
    }
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
        if (actorRef !== entry.actor) return;
        const step = snapshot as { value: unknown; context: { pinned: boolean; queue: readonly unknown[] } };
        this.#observe(entry, step.value, eventType);
        if (!entry.removed) this.#prunable.update(entry, prunableKind(step.value, step.context));
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
    if (to === 'gaveUp') this.#metrics.gaveUp += 1;
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
    this.#peerStates.changed(entry.peerId, to);
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
    this.#protocolLimits.forget(connection.id);
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
      // Heartbeats take no machine step (see heartbeat.ts).
      case 'ping':
        if (typeof m.seq !== 'number') break;
        this.#heartbeats.ping(entry, connection, m.seq);
        return;
      case 'pong':
        if (typeof m.seq !== 'number') break;
        this.#heartbeats.pong(entry, connection, m.seq);
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
      connection = await staggeredDial({
        addresses: rankAddresses(addresses, this.options.addressOrder),
        delayMs: this.options.dialStaggerMs,
        clock: this.clock,
        signal,
        dial: (address, attemptSignal) => this.#adapter.dial(peerId, address, { signal: attemptSignal }),
        abandon: (late) => late.close(ConnectionErrorCode.Abandoned, reasonFor(ConnectionErrorCode.Abandoned)),
      });
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
        limitInbound: effect('limitInbound', (entry, p: { streamId: string; protocol: string; connectionId: string }) => {
          const incoming = entry.inbound(p.streamId);
          entry.deleteInbound(p.streamId);
          this.#metrics.inboundRejected += 1;
          this.#metrics.inboundLimited += 1;
          incoming?.reject(this.#protocolLimits.limited(p.protocol, p.connectionId) ?? `${STREAM_LIMIT_REASON}: ${p.protocol}`);
        }),
        rejectConnection: effect('rejectConnection', (entry, p: { connectionId: string; code: ConnectionErrorCode }) =>
          this.#closeConnection(entry, p.connectionId, p.code),
        ),
        closeConnection: effect('closeConnection', (entry, p: { connectionId: string; code: ConnectionErrorCode }) =>
          this.#closeConnection(entry, p.connectionId, p.code),
        ),
        sendControl: effect('sendControl', (entry, p: { connectionId: string; message: ControlMessage }) => {
          entry.connection(p.connectionId)?.sendControl(p.message);
        }),
        startHeartbeat: effect('startHeartbeat', (entry, p: { connectionId: string }) => this.#heartbeats.start(entry, p.connectionId)),
        stopHeartbeat: effect('stopHeartbeat', (entry) => this.#heartbeats.stop(entry)),
      },
      guards: {
        hasHandler: (_args, { protocol }) => this.#handlers.has(protocol),
        protocolLimited: ({ event }) =>
          event.type === 'STREAM.INBOUND' && this.#protocolLimits.limited(event.protocol, event.connectionId) !== undefined,
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
        idleTimeout: o.idleTimeoutMs,
        drainDeadline: o.drainDeadlineMs,
        forceCloseGrace: o.forceCloseGraceMs,
        // The wait before the next attempt; with none left, the dial backoff (see the machine's `errored`).
        retryBackoff: ({ context }) =>
          backoffDelay(canRetry(context) ? (context.pinned ? o.pinnedRetry : o.retry) : o.dialBackoff, context.attempts, this.#random),
        restartPeriod: o.pinnedRestartIntensity.periodMs,
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
    // Counted in the step that accepted it, so the machine's next limit check sees it.
    const uncount = this.#protocolLimits.accepted(incoming.protocol, connectionId);
    const handlerDone = this.#protocolLimits.handlerStarted(incoming.protocol);
    void stream.closed.then(() => {
      try {
        uncount();
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
          (result as Promise<void>).then(handlerDone, (error: unknown) => {
            handlerDone();
            failed(error);
          });
          return;
        }
      } catch (error) {
        failed(error);
      }
      handlerDone();
    });
  }

  #closeConnection(entry: Entry, connectionId: string, code: ConnectionErrorCode): void {
    this.#protocolLimits.forget(connectionId);
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
    // One bound for the whole stop, the machines and the adapter's close together.
    let deadline = this.clock.now() + (this.#forced ? 0 : this.options.drainDeadlineMs) + this.options.forceCloseGraceMs + 1;
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
    for (const entry of [...this.#entries.values()]) this.#remove(entry, info('ENGINE_STOPPED', 'the engine stopped'));
    for (const id of [...this.#pending.keys()]) this.#answer(id, info('ENGINE_STOPPED', 'the engine stopped'));
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
