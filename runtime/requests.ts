/**
 * Requests: the one place a request is answered.
 *
 * A request (`openStream`, `withConnection`, or a `StreamRequest` pushed into
 * `engine.requests`) becomes a `PendingRequest` here, with its deadline timer
 * and its abort registration, and is sent into its peer's machine. Whatever
 * ends it (the machine's `answer`, `deliverStream` or `grantLease` effects, a
 * deadline, an abort, the peer's record going, `stop()`) goes through
 * `#settle`, the single place a pending request is forgotten, then through
 * `#reply`, the single place a caller is called: each request is answered
 * exactly once, never synchronously from inside `requests.next()`.
 */
import type { Stream } from '../protocol/adapter.js';
import { errorInfo, type ErrorInfo } from '../protocol/codes.js';
import type { Clock } from '../protocol/time.js';
import type { RequestRef } from '../machines/types.js';
import { listenAbort, unlistenAbort } from './abort.js';
import { diagnostics } from './diagnostics.js';
import { toPeerlineError } from './errors.js';
import type { LevelledLogger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { PeerRecord } from './peer-record.js';
import { wrapStream, type LeasedConnection, type StreamAnswer } from './streams.js';

/** What a `withConnection` request gets: the connection, and how to give it back. */
export interface Lease {
  readonly connection: LeasedConnection;
  readonly release: () => void;
}

/** What a request is, as `submit` takes it. */
export interface RequestSpec {
  readonly peerId: string;
  readonly protocol: string;
  readonly kind: 'stream' | 'lease';
  readonly signal: AbortSignal | undefined;
  readonly deadline: number | undefined;
  /** Wait through backoff and retries instead of failing at once (`OpenStreamOptions.waitForReady`). */
  readonly waitForReady: boolean;
  readonly onStream: (answer: StreamAnswer) => void;
  readonly onLease: ((lease: Lease) => void) | undefined;
}

/**
 * A request the engine owes an answer. Settled exactly once (see `#settle`).
 *
 * It is also the listener on the caller's signal (`handleEvent`), one
 * listener for the request's whole life: while pending, an abort cancels the
 * request; once a stream is delivered, an abort aborts the stream, until the
 * stream closes.
 */
class PendingRequest {
  readonly id: string;
  readonly peerId: string;
  readonly protocol: string;
  readonly kind: 'stream' | 'lease';
  readonly signal: AbortSignal | undefined;
  readonly onStream: (answer: StreamAnswer) => void;
  readonly onLease: ((lease: Lease) => void) | undefined;
  /** When it arrived, on the engine's clock: stream-open latency and the diagnostics' durations. */
  readonly startedAt: number;
  readonly #onAbort: (pending: PendingRequest) => void;
  timer: unknown = undefined;
  /** True while the record listens on `signal`. */
  listening = false;
  record: PeerRecord | undefined = undefined;
  /** The stream delivered for this request, until it closes. */
  stream: Stream | undefined = undefined;

  constructor(id: string, spec: RequestSpec, onAbort: (pending: PendingRequest) => void, startedAt: number) {
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

export interface RequestsInit {
  /** This engine's peer id: a request to it is invalid. */
  readonly localPeerId: string;
  readonly maxProtocolLength: number;
  readonly maxConnections: number;
  readonly clock: Clock;
  readonly metrics: Metrics;
  readonly log: LevelledLogger;
  /** Whether the engine takes requests now, and if not why. */
  refusal(): string | undefined;
  /** The peer's live record, made if there is none; undefined when the connection limit leaves no room. */
  recordFor(peerId: string): PeerRecord | undefined;
  /** Counts and logs an internal error. */
  failed(what: string, error: unknown): void;
}

export class Requests {
  readonly #init: RequestsInit;
  readonly #clock: Clock;
  readonly #metrics: Metrics;
  readonly #pending = new Map<string, PendingRequest>();
  #nextId = 0;
  /** Above 0 while a request is being submitted: answers given meanwhile wait for a microtask (never synchronous). */
  #submitting = 0;
  /** A pending request's caller aborted. One function for all of them. */
  readonly #onAbort = (pending: PendingRequest): void => this.#cancel(pending, errorInfo('ABORTED', 'the request was aborted'));

  constructor(init: RequestsInit) {
    this.#init = init;
    this.#clock = init.clock;
    this.#metrics = init.metrics;
  }

  /** Requests waiting for an answer. */
  get size(): number {
    return this.#pending.size;
  }

  submit(spec: RequestSpec): void {
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
    const pending = new PendingRequest((this.#nextId++).toString(36), spec, this.#onAbort, this.#clock.now());
    const invalid = this.#validate(spec);
    if (invalid !== undefined) return this.#reply(pending, { ok: false, error: toPeerlineError(invalid, spec.peerId) });
    const refusal = this.#init.refusal();
    if (refusal !== undefined) {
      return this.#reply(pending, { ok: false, error: toPeerlineError(errorInfo('ENGINE_STOPPED', refusal), spec.peerId) });
    }
    if (spec.signal?.aborted) {
      return this.#reply(pending, { ok: false, error: toPeerlineError(errorInfo('ABORTED', 'the request was aborted'), spec.peerId) });
    }
    this.#pending.set(pending.id, pending);
    if (spec.deadline !== undefined) {
      const wait = Math.max(0, spec.deadline - this.#clock.now());
      pending.timer = this.#clock.setTimeout(
        () => this.#cancel(pending, errorInfo('STREAM_TIMEOUT', `no answer from peer ${spec.peerId} before the deadline`)),
        wait,
      );
    }
    pending.listen();
    const record = this.#init.recordFor(spec.peerId);
    if (record === undefined) {
      return this.answer(pending.id, errorInfo('CONNECTION_LIMIT', `${this.#init.maxConnections} connections are open and none is idle`));
    }
    if (record.removed) {
      // The machine ended while starting (e.g. the dial queue refused it at once).
      const cause = record.actor.getSnapshot().context.lastError;
      return this.answer(pending.id, cause ?? errorInfo('CONNECTION_LOST', `peer ${spec.peerId} closed while starting`));
    }
    pending.record = record;
    record.addRequest(pending.id);
    const ref: RequestRef = spec.waitForReady
      ? { id: pending.id, kind: spec.kind, protocol: spec.protocol, waitForReady: true }
      : { id: pending.id, kind: spec.kind, protocol: spec.protocol };
    record.actor.send({ type: 'REQUEST', request: ref });
  }

  #validate(spec: { peerId: unknown; protocol: unknown; kind: 'stream' | 'lease' }): ErrorInfo | undefined {
    if (typeof spec.peerId !== 'string' || spec.peerId.length === 0) {
      return errorInfo('INVALID_REQUEST', 'peerId must be a non-empty string');
    }
    if (spec.peerId === this.#init.localPeerId) return errorInfo('INVALID_REQUEST', 'a peer cannot open a stream to itself');
    if (spec.kind === 'lease') return undefined;
    if (typeof spec.protocol !== 'string' || spec.protocol.length === 0) {
      return errorInfo('INVALID_REQUEST', 'protocol must be a non-empty string');
    }
    if (Buffer.byteLength(spec.protocol) > this.#init.maxProtocolLength) {
      return errorInfo('INVALID_REQUEST', `protocol is longer than ${this.#init.maxProtocolLength} bytes`);
    }
    return undefined;
  }

  /** Deadline or abort: the machine answers if it still holds the request; else we do. */
  #cancel(pending: PendingRequest, error: ErrorInfo): void {
    try {
      if (!this.#pending.has(pending.id)) return;
      const record = pending.record;
      if (record !== undefined && !record.removed) {
        record.actor.send({ type: 'REQUEST.CANCEL', id: pending.id, error });
      }
      // A request the machine no longer holds (it is between answers) is answered here.
      if (this.#pending.has(pending.id)) this.answer(pending.id, error);
    } catch (failure) {
      this.#init.failed('cancel', failure);
    }
  }

  /** Answers a pending request with an error. The single place errors reach callers. */
  answer(id: string, error: ErrorInfo): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#settle(pending);
    this.#reply(pending, { ok: false, error: toPeerlineError(error, pending.peerId) });
  }

  /** Answers every pending request with `error` (the engine stopped). */
  answerAll(error: ErrorInfo): void {
    for (const id of [...this.#pending.keys()]) this.answer(id, error);
  }

  /**
   * Answers request `id` with `stream`, opened to `peerId`; false if it is
   * not pending (the caller then disposes of the stream). After delivery the
   * caller's signal still owns the stream: aborting it aborts the stream,
   * until `closed` calls `onClosed`.
   */
  deliver(id: string, stream: Stream, peerId: string, onClosed: () => void): boolean {
    const pending = this.#pending.get(id);
    if (pending === undefined) return false;
    this.#settle(pending, stream);
    const peerStream = wrapStream(stream, peerId, 'outbound');
    void stream.closed.then(() => {
      try {
        pending.stream = undefined;
        pending.unlisten();
        onClosed();
      } catch (error) {
        this.#init.failed('stream closed', error);
      }
    });
    this.#reply(pending, { ok: true, stream: peerStream });
    return true;
  }

  /**
   * Answers lease request `id` with `lease`; false if no lease request `id` is
   * pending (the caller then releases it). A callback that throws gets its
   * lease released.
   */
  grant(id: string, lease: Lease): boolean {
    const pending = this.#pending.get(id);
    if (pending === undefined || pending.onLease === undefined) return false;
    this.#settle(pending);
    this.#metrics.leases += 1;
    try {
      pending.onLease(lease);
    } catch (error) {
      this.#metrics.internalErrors += 1;
      this.#init.log.warn('peerline: a lease callback threw', error);
      lease.release();
    }
    return true;
  }

  /**
   * Forgets a pending request: it is answered by the caller right after. The
   * record keeps listening on the caller's signal only when a stream is
   * delivered (`stream`): the signal owns the stream until it closes.
   */
  #settle(pending: PendingRequest, stream?: Stream): void {
    this.#pending.delete(pending.id);
    pending.record?.deleteRequest(pending.id);
    if (pending.timer !== undefined) this.#clock.clearTimeout(pending.timer);
    if (stream === undefined) pending.unlisten();
    else pending.stream = stream;
  }

  #reply(pending: PendingRequest, answer: StreamAnswer): void {
    const now = this.#clock.now();
    const durationMs = now - pending.startedAt;
    if (answer.ok) {
      this.#metrics.opened += 1;
      this.#metrics.openHistogram.observe(durationMs);
    } else {
      this.#metrics.failure(answer.error.code);
    }
    if (diagnostics.streamOpen.hasSubscribers || diagnostics.requestError.hasSubscribers) this.#publish(pending, answer, durationMs, now);
    if (this.#submitting > 0) {
      queueMicrotask(() => this.#call(pending, answer));
      return;
    }
    this.#call(pending, answer);
  }

  #call(pending: PendingRequest, answer: StreamAnswer): void {
    try {
      pending.onStream(answer);
    } catch (error) {
      this.#metrics.internalErrors += 1;
      this.#init.log.warn(`peerline: a reply callback for peer ${pending.peerId} threw`, error);
    }
  }

  #publish(pending: PendingRequest, answer: StreamAnswer, durationMs: number, at: number): void {
    const { peerId, protocol, kind } = pending;
    const localPeerId = this.#init.localPeerId;
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
}
