/**
 * One peerline connection over one @matrixai/quic connection (either side).
 *
 * Every library event becomes a handler call: `EventQUICConnectionError` (the
 * remote closed, the idle timer fired, TLS failed) becomes `onClose`, peer
 * streams become `onControl` (the control stream) or `onStream`. Nothing the
 * library throws from its own handlers can reach the process: `EventError`
 * listeners take the place of the library's default (which re-throws), on
 * the connection and its client (installed by the adapter, which calls
 * `libraryFailure` here) and on every stream (installed here).
 *
 * The control channel is the first bidirectional stream the dialler opens,
 * marked by its kind byte; the listener hands the connection over only when
 * it arrives (the dialler opens it once its own certificate check passed).
 *
 * Stream credit: QUIC lets the remote bound how many streams we may open
 * (100 by default, plus one here for the control stream), and @matrixai/quic
 * throws `ErrorQUICStreamLimit` past it, after which that connection cannot
 * open any stream again (the failed stream id stays marked as used). So an
 * open first checks the credit left (`peerStreamsLeftBidi`); without credit
 * it waits, in order and bounded (count, and the caller's signal), until the
 * remote's MAX_STREAMS frame arrives. How streams end so that the remote
 * gives credit back at all is in `wire.ts`.
 */
import {
  errors as quicErrors,
  events as quicEvents,
  type QUICClient,
  type QUICConnection,
  type QUICStream,
} from '@matrixai/quic';
import {
  TransportError,
  type CloseInfo,
  type Connection,
  type ConnectionHandlers,
  type ControlMessage,
  type IncomingStream,
  type Stream,
} from '../adapter.js';
import { HandlerQueue, type ConnectionEvent } from '../handler-queue.js';
import { ConnectionErrorCode, codeForReason, reasonFor } from '../../machines/codes.js';
import { quicAddress } from './address.js';
import {
  ABORT_FRAME,
  ACK,
  ByteQueue,
  END_FRAME,
  ControlDecoder,
  KIND_CONTROL,
  KIND_USER,
  NACK,
  WireError,
  decodeUtf8,
  encodeControl,
  encodeHeader,
  encodeNack,
  fill,
} from './wire.js';
import {
  QuicStreamEnd,
  StreamCode,
  StreamReset,
  asTransportError,
  drainQuicReader,
  finishQuicWrite,
  resetQuicStream,
  type StreamOwner,
} from './stream.js';
import { tuneStream, untangleStream } from './tuning.js';

/** Opens that may wait for stream credit at once, per connection; more fail with kind `stream-limit`. */
export const MAX_WAITING_OPENS = 4096;
/** Events held for a connection whose handlers are not installed yet; more close it. */
const MAX_BUFFERED_EVENTS = 1024;
/** Control frames held on the listener side until the dialler's control stream arrives. */
const MAX_EARLY_CONTROL = 64;
/** How often a waiting open re-checks the credit when no packet arrives (the library gives no credit event). */
const CREDIT_POLL_MS = 5;
/** Longest reason phrase put in a CONNECTION_CLOSE frame, in bytes. */
const MAX_CLOSE_REASON = 256;

const EVENT_ERROR = 'EventError';

const encoder = new TextEncoder();
function noop(): void {}

/**
 * Writes and forgets: a failed write shows up on the stream's read side (a
 * reset, or the connection's end). On Node 20 a write to a QUIC writable that
 * already closed throws at once instead of rejecting (nodejs/node#57272); that
 * is caught here too.
 */
function writeQuietly(writer: WritableStreamDefaultWriter<Uint8Array>, bytes: Uint8Array): Promise<void> {
  try {
    return writer.write(bytes).catch(noop);
  } catch {
    return Promise.resolve();
  }
}

/** What a connection needs from its adapter. */
export interface ConnectionHost {
  readonly localPeerId: string;
  readonly maxProtocolLength: number;
  /** Longest wait for a stream header, ms. */
  readonly headerTimeoutMs: number;
  /** Whether library internals are tuned (see tuning.ts). */
  readonly tuning: boolean;
  nextId(): string;
  connectionEnded(connection: QuicConnection): void;
  report(what: string, error: unknown): void;
  /** Counts and reports an error the library threw from one of its handlers. */
  libraryError(what: string, error: unknown): void;
}


/** The native quiche connection inside a QUICConnection (not in the library's typings). */
interface NativeConnection {
  peerStreamsLeftBidi(): number;
  streamSend(streamId: number, data: Uint8Array, fin: boolean): number | null;
}

function nativeOf(quic: QUICConnection): NativeConnection | undefined {
  const native = (quic as unknown as { conn?: Partial<NativeConnection> }).conn;
  return typeof native?.peerStreamsLeftBidi === 'function' && typeof native.streamSend === 'function'
    ? (native as NativeConnection)
    : undefined;
}

/** Peer-initiated streams the library created before anyone listened (not in its typings). */
function existingStreams(quic: QUICConnection): QUICStream[] {
  const map = (quic as unknown as { streamMap?: Map<number, QUICStream> }).streamMap;
  return map instanceof Map ? [...map.values()] : [];
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function reasonText(bytes: unknown): string {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) return '';
  try {
    return decodeUtf8(bytes);
  } catch {
    return '';
  }
}

/** TLS alert codes as QUIC crypto errors (0x100 + alert). */
export const CryptoError = { BadCertificate: 0x100 + 42, AccessDenied: 0x100 + 49, UserCanceled: 0x100 + 90 } as const;

/** QUIC transport error CONNECTION_REFUSED (RFC 9000 20.1). */
export const QUIC_CONNECTION_REFUSED = 0x02;

/**
 * The peerline code of a refusal by the remote before or during TLS, if it
 * was one: TLS alert access_denied is a gate's (AdmissionDenied); a transport
 * CONNECTION_REFUSED carries the reason text of its code (see adapter.ts).
 */
export function refusalCode(error: unknown): ConnectionErrorCode | undefined {
  const data = (error as { data?: { isApp?: boolean; errorCode?: number; reason?: Uint8Array } } | undefined)?.data;
  if (error instanceof quicErrors.ErrorQUICConnectionPeerTLS) {
    return data?.errorCode === CryptoError.AccessDenied ? ConnectionErrorCode.AdmissionDenied : undefined;
  }
  if (error instanceof quicErrors.ErrorQUICConnectionPeer && data?.isApp !== true && data?.errorCode === QUIC_CONNECTION_REFUSED) {
    return codeForReason(reasonText(data.reason));
  }
  return undefined;
}

/** `quic://HOST:PORT` of the remote end of a library connection (undefined if it has no usable address). */
export function remoteAddressOf(quic: QUICConnection): string | undefined {
  try {
    return quicAddress(quic.remotePort, quic.remoteHost);
  } catch {
    return undefined;
  }
}

/** How the end of a QUIC connection looks to peerline. */
export function closeInfoOf(error: unknown): CloseInfo {
  const data = (error as { data?: { isApp?: boolean; errorCode?: number; reason?: Uint8Array } } | undefined)?.data;
  const refusal = refusalCode(error);
  if (refusal !== undefined) {
    return { local: false, code: refusal, reason: `the remote refused the connection: ${reasonFor(refusal)}`, error: false };
  }
  if (error instanceof quicErrors.ErrorQUICConnectionPeerTLS) {
    return {
      local: false,
      code: ConnectionErrorCode.IdentityMismatch,
      reason: `the remote refused our certificate (TLS alert ${((data?.errorCode ?? 0x100) - 0x100).toString()})`,
      error: true,
    };
  }
  if (error instanceof quicErrors.ErrorQUICConnectionPeer) {
    if (data?.isApp === true) {
      return { local: false, code: data.errorCode, reason: reasonText(data.reason) || 'closed by the remote', error: false };
    }
    return {
      local: false,
      code: undefined,
      reason: `the remote closed the connection (transport error ${String(data?.errorCode)})`,
      error: true,
    };
  }
  if (error instanceof quicErrors.ErrorQUICConnectionIdleTimeout) {
    return { local: false, code: undefined, reason: 'idle timeout: nothing heard from the remote', error: true };
  }
  if (error instanceof quicErrors.ErrorQUICConnectionLocalTLS) {
    return { local: false, code: ConnectionErrorCode.IdentityMismatch, reason: 'the remote certificate failed verification', error: true };
  }
  return { local: false, code: undefined, reason: `transport failure: ${describe(error)}`, error: true };
}

/** The control channel: one QUIC stream, frames in both directions. */
interface ControlChannel {
  readonly quic: QUICStream;
  readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  /** The kind byte, sent with the first frame (dialler side only). */
  prefix: Uint8Array | undefined;
}

export class QuicConnection implements Connection, StreamOwner {
  readonly id: string;
  readonly localPeerId: string;
  readonly remotePeerId: string;
  readonly direction: 'inbound' | 'outbound';
  readonly remoteAddress: string | undefined;

  readonly #host: ConnectionHost;
  readonly #quic: QUICConnection;
  readonly #client: QUICClient | undefined;
  readonly #native: NativeConnection | undefined;
  readonly #events = new HandlerQueue(
    MAX_BUFFERED_EVENTS,
    () => this.#fail('too many events buffered before setHandlers'),
    (what, deliver) => {
      try {
        deliver();
      } catch (error) {
        this.report(`${what} handler`, error);
      }
    },
  );
  #closeInfo: CloseInfo | undefined;
  #closeError: TransportError | undefined;
  #stopping: Promise<void> | undefined;

  #control: ControlChannel | undefined;
  readonly #earlyControl: Uint8Array[] = [];
  readonly #seen = new WeakSet<QUICStream>();
  readonly #streams = new Set<QuicStreamEnd>();
  readonly #opens = new Set<OpenAttempt>();
  readonly #waiters: OpenAttempt[] = [];
  readonly #incoming = new Set<Incoming>();
  #onReady: ((connection: QuicConnection) => void) | undefined;
  #pollTimer: ReturnType<typeof setInterval> | undefined;
  #sendListening = false;
  #kickQueued = false;

  constructor(options: {
    host: ConnectionHost;
    quic: QUICConnection;
    client?: QUICClient;
    direction: 'inbound' | 'outbound';
    remotePeerId: string;
    /** Inbound: called once the dialler's control stream arrived (the connection is then usable). */
    onReady?: (connection: QuicConnection) => void;
  }) {
    this.#host = options.host;
    this.#onReady = options.onReady;
    this.#quic = options.quic;
    this.#client = options.client;
    this.#native = nativeOf(options.quic);
    this.id = `quic-${options.host.nextId()}`;
    this.localPeerId = options.host.localPeerId;
    this.remotePeerId = options.remotePeerId;
    this.direction = options.direction;
    this.remoteAddress = remoteAddressOf(options.quic);

    const quic = this.#quic;
    // The adapter guards the QUICConnection (and the client) itself, from the
    // moment the library registers it, and calls `libraryFailure` here.
    quic.addEventListener(quicEvents.EventQUICConnectionError.name, this.#onQuicError);
    quic.addEventListener(quicEvents.EventQUICConnectionStream.name, this.#onQuicStream);
    quic.addEventListener(quicEvents.EventQUICConnectionStopped.name, this.#onQuicStopped, { once: true });

    // An error the library saw before these listeners existed.
    const early = quic.getConnectionError();
    if (early !== undefined) {
      // A refusal before TLS finished travels as CONNECTION_REFUSED with its reason text.
      const refused = !early.isApp && early.errorCode === QUIC_CONNECTION_REFUSED ? codeForReason(reasonText(early.reason)) : undefined;
      this.#end({
        local: false,
        code: early.isApp ? early.errorCode : refused,
        reason: reasonText(early.reason) || 'closed before it was handed over',
        error: !early.isApp && refused === undefined,
      });
      return;
    }
    if (this.direction === 'outbound') this.#openControl();
    for (const stream of existingStreams(quic)) {
      if (stream.initiated === 'peer') this.#onPeerStream(stream);
    }
  }

  /** @internal The library connection underneath. */
  get quic(): QUICConnection {
    return this.#quic;
  }

  /** True once the connection ended, for whatever reason. */
  get isClosed(): boolean {
    return this.#closeInfo !== undefined;
  }

  /** Streams open on this connection (both directions). */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** Opens waiting for stream credit. */
  get waitingOpens(): number {
    return this.#waiters.length;
  }

  setHandlers(handlers: ConnectionHandlers): void {
    this.#events.setHandlers(handlers);
  }

  sendControl(message: ControlMessage): void {
    if (this.#closeInfo !== undefined) return;
    const frame = encodeControl(message);
    const control = this.#control;
    if (control === undefined) {
      // Listener side: the dialler's control stream has not arrived yet.
      if (this.#earlyControl.length < MAX_EARLY_CONTROL) this.#earlyControl.push(frame);
      else this.#host.report('control', new Error('control message dropped: the control stream has not arrived'));
      return;
    }
    this.#writeControl(control, frame);
  }

  openStream(protocol: string, options: { signal: AbortSignal }): Promise<Stream> {
    if (this.#closeError !== undefined) return Promise.reject(this.#closeError);
    const signal = options?.signal;
    if (signal?.aborted === true) return Promise.reject(new TransportError('aborted', 'stream open aborted'));
    let header: Uint8Array;
    try {
      header = encodeHeader(protocol);
    } catch (error) {
      return Promise.reject(new TransportError('protocol', describe(error)));
    }
    return new Promise<Stream>((resolve, reject) => {
      const open = new OpenAttempt(this, this.#quic, protocol, header, signal, resolve, reject);
      this.#opens.add(open);
      if (this.#waiters.length === 0 && this.#creditLeft() > 0) {
        open.start();
      } else if (this.#waiters.length >= MAX_WAITING_OPENS) {
        open.fail(new TransportError('stream-limit', `${MAX_WAITING_OPENS} stream opens already wait for credit`));
      } else {
        this.#waiters.push(open);
        this.#armCreditWatch();
      }
    });
  }

  close(code: number, reason: string): void {
    if (this.#closeInfo !== undefined) return;
    const text = String(reason);
    this.#end({ local: true, code, reason: text, error: false });
    this.#stopQuic(code, text);
  }

  /** Resolves once the QUIC connection has fully stopped (never rejects). */
  whenStopped(): Promise<void> {
    return Promise.all([this.#stopping, this.#quic.closedP]).then(noop, noop);
  }

  // ------------------------------------------------------- StreamOwner

  connectionError(): TransportError | undefined {
    return this.#closeError;
  }

  streamEnded(stream: QuicStreamEnd): void {
    this.#streams.delete(stream);
  }

  get drainTimeoutMs(): number {
    return this.#host.headerTimeoutMs;
  }

  sendWithFin(quic: QUICStream, bytes: Uint8Array): boolean {
    if (this.#native === undefined || this.#closeInfo !== undefined) return false;
    try {
      // The library has no "write with FIN"; its close() then only records
      // a FIN that is already there (and triggers the send).
      return this.#native.streamSend(quic.streamId, bytes, true) === bytes.length;
    } catch {
      return false;
    }
  }

  report(what: string, error: unknown): void {
    this.#host.report(`${this.id} ${what}`, error);
  }

  // ---------------------------------------------------- internal to opens

  /** @internal */
  openDone(open: OpenAttempt, stream: QuicStreamEnd | undefined): void {
    this.#opens.delete(open);
    const index = this.#waiters.indexOf(open);
    if (index >= 0) this.#waiters.splice(index, 1);
    // A stream may be over before it is handed out (ACK and ABORT in one packet).
    if (stream !== undefined && !stream.isDone) this.#streams.add(stream);
  }

  /** @internal A QUIC stream was made: guard it and remember it is ours. */
  adopt(quic: QUICStream): void {
    this.#seen.add(quic);
    if (this.#host.tuning) {
      untangleStream(this.#quic, quic);
      tuneStream(quic);
    }
    quic.addEventListener(EVENT_ERROR, (event: Event) => this.#onStreamLibraryError(quic, event));
  }

  /** @internal */
  nextStreamId(quic: QUICStream): string {
    return `${this.id}/${quic.streamId}`;
  }

  // -------------------------------------------------------------- credit

  #creditLeft(): number {
    if (this.#native === undefined) return 1;
    try {
      return this.#native.peerStreamsLeftBidi();
    } catch {
      return 0;
    }
  }

  #armCreditWatch(): void {
    if (!this.#sendListening) {
      // Credit comes back in a MAX_STREAMS frame; every packet received is
      // followed by a send, so a send is the cue to look again.
      this.#quic.addEventListener(quicEvents.EventQUICConnectionSend.name, this.#onSend);
      this.#sendListening = true;
    }
    this.#pollTimer ??= setInterval(() => this.#kick(), CREDIT_POLL_MS);
  }

  #disarmCreditWatch(): void {
    if (this.#sendListening) {
      this.#quic.removeEventListener(quicEvents.EventQUICConnectionSend.name, this.#onSend);
      this.#sendListening = false;
    }
    if (this.#pollTimer !== undefined) {
      clearInterval(this.#pollTimer);
      this.#pollTimer = undefined;
    }
  }

  readonly #onSend = (): void => {
    if (this.#kickQueued) return;
    this.#kickQueued = true;
    // Not from inside the library's send loop: opening writes, which sends.
    queueMicrotask(() => {
      this.#kickQueued = false;
      this.#kick();
    });
  };

  #kick(): void {
    while (this.#waiters.length > 0 && this.#closeInfo === undefined && this.#creditLeft() > 0) {
      const open = this.#waiters.shift()!;
      open.start();
    }
    if (this.#waiters.length === 0) this.#disarmCreditWatch();
  }

  // ------------------------------------------------------------- control

  #openControl(): void {
    let quic: QUICStream;
    try {
      quic = this.#quic.newStream('bidi');
    } catch (error) {
      this.report('control stream', error);
      this.#fail(`cannot open the control stream: ${describe(error)}`);
      return;
    }
    this.adopt(quic);
    const control: ControlChannel = {
      quic,
      writer: quic.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>,
      reader: quic.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>,
      prefix: Uint8Array.of(KIND_CONTROL),
    };
    this.#control = control;
    void this.#readControl(control, []);
    // The listener hands the connection over when this stream arrives, so the
    // kind byte must go even if no control message does. The runtime sends
    // hello right after the dial: give it the chance to share the packet.
    setImmediate(() => {
      if (control.prefix !== undefined && this.#control === control) {
        control.prefix = undefined;
        void writeQuietly(control.writer, Uint8Array.of(KIND_CONTROL));
      }
    });
  }

  #acceptControl(quic: QUICStream, reader: ReadableStreamDefaultReader<Uint8Array>, leftover: Uint8Array[]): void {
    if (this.direction !== 'inbound' || this.#control !== undefined) {
      this.#violation('a second control stream, or one from the listener');
      return;
    }
    const control: ControlChannel = {
      quic,
      writer: quic.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>,
      reader,
      prefix: undefined,
    };
    this.#control = control;
    for (const frame of this.#earlyControl.splice(0)) this.#writeControl(control, frame);
    const onReady = this.#onReady;
    this.#onReady = undefined;
    try {
      onReady?.(this);
    } catch (error) {
      this.report('onReady', error);
    }
    void this.#readControl(control, leftover);
  }

  #writeControl(control: ControlChannel, frame: Uint8Array): void {
    let bytes = frame;
    if (control.prefix !== undefined) {
      bytes = new Uint8Array(control.prefix.length + frame.length);
      bytes.set(control.prefix, 0);
      bytes.set(frame, control.prefix.length);
      control.prefix = undefined;
    }
    // A failed write means the stream or the connection died: the reader sees it.
    void writeQuietly(control.writer, bytes);
  }

  async #readControl(control: ControlChannel, leftover: Uint8Array[]): Promise<void> {
    const decoder = new ControlDecoder();
    try {
      for (const chunk of leftover) this.#deliver(decoder.push(chunk));
      for (;;) {
        const { done, value } = await control.reader.read();
        if (this.#closeInfo !== undefined) return;
        if (done) {
          this.#violation('the control stream ended');
          return;
        }
        this.#deliver(decoder.push(value));
      }
    } catch (error) {
      if (this.#closeInfo !== undefined) return;
      if (error instanceof WireError) {
        this.#violation(`malformed control frame: ${error.message}`);
        return;
      }
      // A reset of the control stream usually means the connection is going:
      // give its close event the chance to arrive first.
      setImmediate(() => {
        if (this.#closeInfo === undefined) this.#violation(`the control stream failed: ${describe(error)}`);
      });
    }
  }

  #deliver(messages: ControlMessage[]): void {
    for (const message of messages) {
      if (this.#closeInfo !== undefined) return;
      this.#emit({ type: 'control', message });
    }
  }

  #violation(why: string): void {
    if (this.#closeInfo !== undefined) return;
    this.#host.report(`${this.id} protocol violation`, new Error(why));
    this.close(ConnectionErrorCode.ProtocolViolation, reasonFor(ConnectionErrorCode.ProtocolViolation));
  }

  // ------------------------------------------------------ inbound streams

  readonly #onQuicStream = (event: Event): void => {
    const quic = (event as unknown as { detail: QUICStream }).detail;
    this.#onPeerStream(quic);
  };

  #onPeerStream(quic: QUICStream): void {
    if (this.#seen.has(quic)) return;
    this.adopt(quic);
    if (this.#closeInfo !== undefined) {
      resetQuicStream(quic, undefined, undefined, new StreamReset(StreamCode.Aborted, 'connection closed'), this);
      return;
    }
    const incoming = new Incoming(this, quic);
    this.#incoming.add(incoming);
    void this.#readHeader(incoming);
  }

  async #readHeader(incoming: Incoming): Promise<void> {
    const queue = new ByteQueue();
    const reader = incoming.reader;
    const timer = setTimeout(() => incoming.malformed('no stream header in time'), this.#host.headerTimeoutMs);
    try {
      if (!(await fill(reader, queue, 1))) return incoming.malformed('the stream ended before its header');
      const kind = queue.take(1)[0];
      if (kind === KIND_CONTROL) {
        if (!incoming.claim()) return;
        this.#incoming.delete(incoming);
        this.#acceptControl(incoming.quic, reader, queue.drain());
        return;
      }
      if (kind !== KIND_USER) return incoming.malformed(`unknown stream kind ${String(kind)}`);
      if (!(await fill(reader, queue, 2))) return incoming.malformed('the stream ended inside its header');
      const head = queue.take(2);
      const length = (head[0]! << 8) | head[1]!;
      if (length === 0 || length > this.#host.maxProtocolLength) {
        return incoming.malformed(`protocol name of ${length} bytes (limit ${this.#host.maxProtocolLength})`);
      }
      if (!(await fill(reader, queue, length))) return incoming.malformed('the stream ended inside its header');
      const protocol = decodeUtf8(queue.take(length));
      incoming.headerDone(protocol, queue.drain());
      if (this.#closeInfo === undefined && incoming.state === 'pending') this.#emit({ type: 'stream', stream: incoming });
    } catch (error) {
      if (error instanceof WireError) incoming.malformed(error.message);
      else incoming.lost(asTransportError(error, this));
    } finally {
      clearTimeout(timer);
    }
  }

  /** @internal */
  incomingDone(incoming: Incoming, stream: QuicStreamEnd | undefined): void {
    this.#incoming.delete(incoming);
    if (stream !== undefined && !stream.isDone) this.#streams.add(stream);
  }

  // ------------------------------------------------------------ library

  readonly #onQuicError = (event: Event): void => {
    const error = (event as unknown as { detail: unknown }).detail;
    if (this.#closeInfo !== undefined) return;
    this.#end(closeInfoOf(error));
    if (error instanceof quicErrors.ErrorQUICConnectionInternal) this.#forceStop();
  };

  readonly #onQuicStopped = (): void => {
    if (this.#closeInfo === undefined) this.#end({ local: false, code: undefined, reason: 'the connection stopped', error: true });
  };

  /** The library threw from one of its handlers on this connection or its client: end it. */
  libraryFailure(error: unknown): void {
    if (this.#closeInfo === undefined) {
      this.#end({ local: false, code: undefined, reason: `transport failure: ${describe(error)}`, error: true });
    }
    this.#forceStop();
  }

  #onStreamLibraryError(quic: QUICStream, event: Event): void {
    const error = (event as unknown as { detail: unknown }).detail;
    this.#host.libraryError(`${this.id} stream ${quic.streamId}`, error);
    try {
      quic.cancel(new StreamReset(StreamCode.Aborted, 'stream failed'));
    } catch {
      // Nothing more to do for this stream.
    }
  }

  #forceStop(): void {
    const code = this.#closeInfo?.code ?? ConnectionErrorCode.Abandoned;
    this.#stopQuic(code, this.#closeInfo?.reason ?? 'transport failure');
  }

  #fail(reason: string): void {
    if (this.#closeInfo !== undefined) return;
    this.#end({ local: true, code: ConnectionErrorCode.Abandoned, reason, error: true });
    this.#stopQuic(ConnectionErrorCode.Abandoned, reason);
  }

  #stopQuic(code: number, reason: string): void {
    if (this.#stopping !== undefined) return;
    const options = {
      isApp: true,
      errorCode: Number.isInteger(code) && code >= 0 ? code : 0,
      reason: encoder.encode(reason).subarray(0, MAX_CLOSE_REASON),
      force: true,
    };
    let stop: Promise<void>;
    try {
      stop = this.#client !== undefined ? this.#client.destroy(options) : this.#quic.stop(options);
    } catch (error) {
      stop = Promise.reject(error);
    }
    this.#stopping = stop.catch((error: unknown) => this.report('stop', error));
  }

  /** Ends this side once: every stream and open fails, the adapter forgets it, onClose follows. */
  #end(info: CloseInfo): void {
    if (this.#closeInfo !== undefined) return;
    this.#closeInfo = info;
    const error = new TransportError('closed', `connection closed: ${info.reason}`, info.code);
    this.#closeError = error;
    this.#disarmCreditWatch();
    this.#waiters.length = 0;
    for (const open of [...this.#opens]) open.fail(error);
    for (const incoming of [...this.#incoming]) incoming.lost(error);
    for (const stream of [...this.#streams]) stream.terminate(error);
    this.#earlyControl.length = 0;
    this.#control = undefined;
    try {
      this.#host.connectionEnded(this);
    } catch (failure) {
      this.report('connectionEnded', failure);
    }
    // Not from inside a library event handler: the runtime may call back in.
    queueMicrotask(() => this.#emit({ type: 'close', info }));
  }

  // -------------------------------------------------------------- events

  #emit(event: ConnectionEvent): void {
    this.#events.emit(event);
  }
}

/** An outbound stream open: credit, header, then the ACK or NACK. */
class OpenAttempt {
  readonly #connection: QuicConnection;
  readonly #quicConnection: QUICConnection;
  readonly #protocol: string;
  readonly #header: Uint8Array;
  readonly #signal: AbortSignal | undefined;
  readonly #resolve: (stream: Stream) => void;
  readonly #reject: (error: unknown) => void;
  #settled = false;
  #quic: QUICStream | undefined;
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #headerWritten: Promise<void> = Promise.resolve();
  readonly #onAbort = (): void => {
    this.fail(new TransportError('aborted', 'stream open aborted'));
  };

  constructor(
    connection: QuicConnection,
    quicConnection: QUICConnection,
    protocol: string,
    header: Uint8Array,
    signal: AbortSignal | undefined,
    resolve: (stream: Stream) => void,
    reject: (error: unknown) => void,
  ) {
    this.#connection = connection;
    this.#quicConnection = quicConnection;
    this.#protocol = protocol;
    this.#header = header;
    this.#signal = signal;
    this.#resolve = resolve;
    this.#reject = reject;
    signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  start(): void {
    if (this.#settled) return;
    let quic: QUICStream;
    try {
      quic = this.#quicConnection.newStream('bidi');
    } catch (error) {
      this.fail(
        error instanceof quicErrors.ErrorQUICStreamLimit
          ? new TransportError('stream-limit', describe(error))
          : (this.#connection.connectionError() ?? new TransportError('closed', `cannot open a stream: ${describe(error)}`)),
      );
      return;
    }
    this.#connection.adopt(quic);
    this.#quic = quic;
    const writer = quic.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
    const reader = quic.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    this.#writer = writer;
    this.#reader = reader;
    // A failed write shows up on the read side (reset, or the connection's end).
    this.#headerWritten = writeQuietly(writer, this.#header);
    void this.#awaitAnswer(quic, reader, writer);
  }

  async #awaitAnswer(
    quic: QUICStream,
    reader: ReadableStreamDefaultReader<Uint8Array>,
    writer: WritableStreamDefaultWriter<Uint8Array>,
  ): Promise<void> {
    const queue = new ByteQueue();
    try {
      if (!(await fill(reader, queue, 1))) {
        this.fail(new TransportError('closed', 'the remote closed the stream without answering'));
        return;
      }
      if (this.#settled) return;
      const answer = queue.take(1)[0];
      if (answer === ACK) {
        const stream = new QuicStreamEnd({
          id: this.#connection.nextStreamId(quic),
          protocol: this.#protocol,
          quic,
          reader,
          writer,
          leftover: queue.drain(),
          owner: this.#connection,
        });
        this.#settle(stream);
        this.#resolve(stream);
        return;
      }
      if (answer === NACK) {
        let reason = 'rejected by the remote';
        if (await fill(reader, queue, 2)) {
          const head = queue.take(2);
          const length = (head[0]! << 8) | head[1]!;
          if (await fill(reader, queue, length)) reason = decodeUtf8(queue.take(length)) || reason;
        }
        if (this.#settled) return;
        this.#settle(undefined);
        // Our direction ends with a byte and the FIN; the NACK's FIN is read:
        // that is what lets QUIC free the stream on both sides.
        void this.#headerWritten.then(() => finishQuicWrite(quic, writer, END_FRAME, this.#connection));
        void drainQuicReader(reader, this.#connection);
        this.#reject(new TransportError('rejected', reason));
        return;
      }
      this.fail(new TransportError('protocol', `unknown stream answer ${String(answer)}`), 'reset');
    } catch (error) {
      this.fail(error instanceof WireError ? new TransportError('protocol', error.message) : asTransportError(error, this.#connection));
    }
  }

  /**
   * Rejects (once). A QUIC stream already made is abandoned with ABORT (its
   * reader drained to the remote's FIN), or reset when the connection is gone
   * or the remote broke the protocol.
   */
  fail(error: TransportError, how: 'abort' | 'reset' = 'abort'): void {
    if (this.#settled) return;
    this.#settle(undefined);
    const quic = this.#quic;
    const reader = this.#reader;
    const writer = this.#writer;
    if (quic !== undefined && reader !== undefined && writer !== undefined) {
      if (how === 'reset' || this.#connection.connectionError() !== undefined) {
        resetQuicStream(quic, reader, writer, new StreamReset(how === 'reset' ? StreamCode.ProtocolViolation : StreamCode.Aborted, error.message), this.#connection);
      } else {
        void this.#headerWritten.then(() => finishQuicWrite(quic, writer, ABORT_FRAME, this.#connection));
        void drainQuicReader(reader, this.#connection);
      }
    }
    this.#reject(error);
  }

  #settle(stream: QuicStreamEnd | undefined): void {
    this.#settled = true;
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#connection.openDone(this, stream);
  }
}

/** A stream the remote opened: its header, then the runtime's accept or reject. */
class Incoming implements IncomingStream {
  readonly quic: QUICStream;
  readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  state: 'header' | 'pending' | 'accepted' | 'rejected' | 'lost' | 'claimed' = 'header';
  #protocol = '';
  #leftover: Uint8Array[] = [];
  #stream: QuicStreamEnd | undefined;
  #lostError: TransportError | undefined;
  readonly #connection: QuicConnection;

  constructor(connection: QuicConnection, quic: QUICStream) {
    this.#connection = connection;
    this.quic = quic;
    this.reader = quic.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
  }

  get protocol(): string {
    return this.#protocol;
  }

  /** Takes the stream for the control channel. */
  claim(): boolean {
    if (this.state !== 'header') return false;
    this.state = 'claimed';
    return true;
  }

  headerDone(protocol: string, leftover: Uint8Array[]): void {
    if (this.state !== 'header') return;
    this.#protocol = protocol;
    this.#leftover = leftover;
    this.state = 'pending';
  }

  /** A malformed or missing header: reset this stream only. */
  malformed(why: string): void {
    if (this.state !== 'header') return;
    this.state = 'lost';
    this.#lostError = new TransportError('protocol', why);
    this.#connection.report('malformed stream header', new Error(why));
    resetQuicStream(this.quic, this.reader, undefined, new StreamReset(StreamCode.ProtocolViolation, why), this.#connection);
    this.#connection.incomingDone(this, undefined);
  }

  /**
   * The stream failed before an answer: the connection ended (reset it
   * quietly), or the remote reset it while we read the header (end our
   * direction with a NACK so QUIC can free it).
   */
  lost(error: TransportError): void {
    if (this.state !== 'header' && this.state !== 'pending') return;
    this.state = 'lost';
    this.#lostError = error;
    if (this.#connection.connectionError() !== undefined) {
      resetQuicStream(this.quic, this.reader, undefined, new StreamReset(StreamCode.Aborted, error.message), this.#connection);
    } else {
      const writer = this.quic.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
      void finishQuicWrite(this.quic, writer, encodeNack(error.message), this.#connection);
      void drainQuicReader(this.reader, this.#connection);
    }
    this.#connection.incomingDone(this, undefined);
  }

  accept(): Stream {
    if (this.#stream !== undefined) return this.#stream;
    if (this.state === 'rejected') throw new TransportError('protocol', 'the stream was already rejected');
    // Nothing else took this writer unless the stream was lost (then it is only a husk).
    const writer = this.quic.writable.locked
      ? (new WritableStream<Uint8Array>().getWriter() as WritableStreamDefaultWriter<Uint8Array>)
      : (this.quic.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>);
    const stream = new QuicStreamEnd({
      id: this.#connection.nextStreamId(this.quic),
      protocol: this.#protocol,
      quic: this.quic,
      reader: this.reader,
      writer,
      leftover: this.#leftover,
      owner: this.#connection,
    });
    this.#stream = stream;
    this.#leftover = [];
    if (this.state !== 'pending') {
      stream.terminate(this.#lostError ?? this.#connection.connectionError() ?? new TransportError('closed', 'the stream is gone'));
      return stream;
    }
    this.state = 'accepted';
    try {
      writer.write(Uint8Array.of(ACK)).catch(noop);
    } catch {
      // The QUIC writable already closed: Node 20 throws here instead of
      // rejecting (nodejs/node#57272). No ACK can go out; the stream is gone.
      stream.terminate(this.#connection.connectionError() ?? new TransportError('closed', 'the stream closed before its ACK'));
    }
    this.#connection.incomingDone(this, stream);
    return stream;
  }

  reject(reason: string): void {
    if (this.state !== 'pending') return;
    this.state = 'rejected';
    const writer = this.quic.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
    // The NACK and the FIN in one QUIC write, then the opener's direction is
    // read to its FIN (see wire.ts).
    void finishQuicWrite(this.quic, writer, encodeNack(String(reason)), this.#connection);
    void drainQuicReader(this.reader, this.#connection);
    this.#connection.incomingDone(this, undefined);
  }
}
