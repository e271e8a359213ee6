/**
 * One peerline connection over one @matrixai/quic connection (either side):
 * its lifecycle. The wire parts live next to it: the control channel
 * (`control.ts`), stream credit (`credit.ts`), outbound opens (`open.ts`),
 * inbound streams (`incoming.ts`), the streams themselves (`stream.ts`); the
 * bytes move on the connection's `StreamTransport` (`seam/`).
 *
 * Library events become handler calls: `EventQUICConnectionError` (the
 * remote closed, the idle timer fired, TLS failed) becomes `onClose`; peer
 * streams become `onControl` (the control stream) or `onStream`. Nothing the
 * library throws from its own handlers can reach the process: the adapter
 * puts `EventError` listeners on the connection and its client (and calls
 * `libraryFailure` here), the library path on every stream.
 */
import { errors as quicErrors, events as quicEvents, type QUICClient, type QUICConnection } from '@matrixai/quic';
import { TransportError, type CloseInfo, type Connection, type ConnectionHandlers, type Stream } from '../../protocol/adapter.js';
import { type ControlMessage } from '../../protocol/control.js';
import { HandlerQueue } from '../../protocol/handler-queue.js';
import { ConnectionErrorCode, reasonFor } from '../../protocol/codes.js';
import { closeInfoOf, describe, earlyCloseInfo, remoteAddressOf } from './close-info.js';
import { ControlChannel, type ControlHost } from './control.js';
import { CreditQueue, MAX_WAITING_OPENS } from './credit.js';
import { Incoming, type IncomingHost } from './incoming.js';
import { OpenAttempt, type OpenHost } from './open.js';
import { detailOf, type StreamTransport, type TransportStream } from './seam/index.js';
import { QuicStreamEnd, asTransportError } from './stream.js';
import { ByteQueue } from '../../protocol/byte-queue.js';
import { KIND_CONTROL, KIND_USER, WireError, decodeUtf8, encodeControl, encodeHeader, fill } from './wire.js';

export { MAX_WAITING_OPENS };

/** Events held for a connection whose handlers are not installed yet; more close it. */
const MAX_BUFFERED_EVENTS = 1024;
/** Control frames held on the listener side until the dialler's control stream arrives. */
const MAX_EARLY_CONTROL = 64;
/** Longest reason phrase put in a CONNECTION_CLOSE frame, in bytes. */
const MAX_CLOSE_REASON = 256;

const encoder = new TextEncoder();
function noop(): void {}

/** What a connection needs from its adapter. */
export interface ConnectionHost {
  readonly localPeerId: string;
  readonly maxProtocolLength: number;
  /** Longest wait for a stream header, ms. */
  readonly headerTimeoutMs: number;
  nextId(): string;
  connectionEnded(connection: QuicConnection): void;
  report(what: string, error: unknown): void;
}

export class QuicConnection implements Connection, OpenHost, IncomingHost, ControlHost {
  readonly id: string;
  readonly localPeerId: string;
  readonly remotePeerId: string;
  readonly direction: 'inbound' | 'outbound';
  readonly remoteAddress: string | undefined;

  readonly #host: ConnectionHost;
  readonly #quic: QUICConnection;
  readonly #client: QUICClient | undefined;
  readonly #transport: StreamTransport;
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
  readonly #streams = new Set<QuicStreamEnd>();
  readonly #opens = new Set<OpenAttempt>();
  readonly #credit: CreditQueue<OpenAttempt>;
  readonly #incoming = new Set<Incoming>();
  #onReady: ((connection: QuicConnection) => void) | undefined;

  constructor(options: {
    host: ConnectionHost;
    quic: QUICConnection;
    client?: QUICClient;
    transport: StreamTransport;
    direction: 'inbound' | 'outbound';
    remotePeerId: string;
    /** Inbound: called once the dialler's control stream arrived (the connection is then usable). */
    onReady?: (connection: QuicConnection) => void;
  }) {
    this.#host = options.host;
    this.#onReady = options.onReady;
    this.#quic = options.quic;
    this.#client = options.client;
    this.#transport = options.transport;
    this.#credit = new CreditQueue(options.transport);
    this.id = `quic-${options.host.nextId()}`;
    this.localPeerId = options.host.localPeerId;
    this.remotePeerId = options.remotePeerId;
    this.direction = options.direction;
    this.remoteAddress = remoteAddressOf(options.quic);

    const quic = this.#quic;
    quic.addEventListener(quicEvents.EventQUICConnectionError.name, this.#onQuicError);
    quic.addEventListener(quicEvents.EventQUICConnectionStopped.name, this.#onQuicStopped, { once: true });

    // An error the library saw before these listeners existed.
    const early = quic.getConnectionError();
    if (early !== undefined) {
      this.#end(earlyCloseInfo(early));
      return;
    }
    if (this.direction === 'outbound') this.#openControl();
    this.#transport.onStream((transport) => this.#onPeerStream(transport));
  }

  /** @internal The library connection underneath. */
  get quic(): QUICConnection {
    return this.#quic;
  }

  /** Which path carries this connection's streams (see `seam/`). */
  get path(): 'native' | 'library' {
    return this.#transport.path;
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
    return this.#credit.length;
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
    control.send(frame);
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
      const open = new OpenAttempt(this, protocol, header, signal, resolve, reject);
      this.#opens.add(open);
      if (this.#credit.canStart()) open.start();
      else if (!this.#credit.wait(open)) {
        open.fail(new TransportError('stream-limit', `${MAX_WAITING_OPENS} stream opens already wait for credit`));
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

  // ---------------------------------------- StreamOwner, OpenHost, IncomingHost

  connectionError(): TransportError | undefined {
    return this.#closeError;
  }

  streamEnded(stream: QuicStreamEnd): void {
    this.#streams.delete(stream);
  }

  get drainTimeoutMs(): number {
    return this.#host.headerTimeoutMs;
  }

  report(what: string, error: unknown): void {
    this.#host.report(`${this.id} ${what}`, error);
  }

  openTransport(): TransportStream {
    if (this.#closeError !== undefined) throw this.#closeError;
    return this.#transport.open();
  }

  nextStreamId(transport: TransportStream): string {
    return `${this.id}/${transport.id}`;
  }

  openDone(open: OpenAttempt, stream: QuicStreamEnd | undefined): void {
    this.#opens.delete(open);
    this.#credit.remove(open);
    // A stream may be over before it is handed out (ACK and ABORT in one packet).
    if (stream !== undefined && !stream.isDone) this.#streams.add(stream);
  }

  incomingDone(incoming: Incoming, stream: QuicStreamEnd | undefined): void {
    this.#incoming.delete(incoming);
    if (stream !== undefined && !stream.isDone) this.#streams.add(stream);
  }

  // ------------------------------------------------------- ControlHost

  deliver(message: ControlMessage): void {
    if (this.#closeInfo !== undefined) return;
    this.#events.emit({ type: 'control', message });
  }

  violation(why: string): void {
    if (this.#closeInfo !== undefined) return;
    this.#host.report(`${this.id} protocol violation`, new Error(why));
    this.close(ConnectionErrorCode.ProtocolViolation, reasonFor(ConnectionErrorCode.ProtocolViolation));
  }

  flood(why: string): void {
    if (this.#closeInfo !== undefined) return;
    this.#host.report(`${this.id} control flood`, new Error(why));
    this.close(ConnectionErrorCode.ControlFlood, reasonFor(ConnectionErrorCode.ControlFlood));
  }

  controlClosed(): boolean {
    return this.#closeInfo !== undefined;
  }

  // ------------------------------------------------------------- control

  #openControl(): void {
    let transport: TransportStream;
    try {
      transport = this.#transport.open();
    } catch (error) {
      this.report('control stream', error);
      this.#fail(`cannot open the control stream: ${describe(error)}`);
      return;
    }
    this.#control = ControlChannel.open(transport, this);
  }

  #acceptControl(transport: TransportStream, leftover: Uint8Array[]): void {
    if (this.direction !== 'inbound' || this.#control !== undefined) {
      this.violation('a second control stream, or one from the listener');
      return;
    }
    const control = ControlChannel.accept(transport, this);
    this.#control = control;
    for (const frame of this.#earlyControl.splice(0)) control.send(frame);
    const onReady = this.#onReady;
    this.#onReady = undefined;
    try {
      onReady?.(this);
    } catch (error) {
      this.report('onReady', error);
    }
    // After the handover: the runtime takes the first message (the hello) with its handlers in place.
    if (this.#closeInfo === undefined) control.listen(leftover);
  }

  // ------------------------------------------------------ inbound streams

  #onPeerStream(transport: TransportStream): void {
    const incoming = new Incoming(this, transport);
    this.#incoming.add(incoming);
    void this.#readHeader(incoming);
  }

  async #readHeader(incoming: Incoming): Promise<void> {
    const queue = new ByteQueue();
    const transport = incoming.transport;
    const timer = setTimeout(() => incoming.malformed('no stream header in time'), this.#host.headerTimeoutMs);
    try {
      if (!(await fill(transport, queue, 1))) return incoming.malformed('the stream ended before its header');
      const kind = queue.take(1)[0];
      if (kind === KIND_CONTROL) {
        if (!incoming.claim()) return;
        this.#incoming.delete(incoming);
        this.#acceptControl(transport, queue.drain());
        return;
      }
      if (kind !== KIND_USER) return incoming.malformed(`unknown stream kind ${String(kind)}`);
      if (!(await fill(transport, queue, 2))) return incoming.malformed('the stream ended inside its header');
      const head = queue.take(2);
      const length = (head[0]! << 8) | head[1]!;
      if (length === 0 || length > this.#host.maxProtocolLength) {
        return incoming.malformed(`protocol name of ${length} bytes (limit ${this.#host.maxProtocolLength})`);
      }
      if (!(await fill(transport, queue, length))) return incoming.malformed('the stream ended inside its header');
      const protocol = decodeUtf8(queue.take(length));
      incoming.headerDone(protocol, queue.drain());
      if (this.#closeInfo === undefined && incoming.state === 'pending') this.#events.emit({ type: 'stream', stream: incoming });
    } catch (error) {
      if (error instanceof WireError) incoming.malformed(error.message);
      else incoming.lost(asTransportError(error, this));
    } finally {
      clearTimeout(timer);
    }
  }

  // ------------------------------------------------------------ library

  readonly #onQuicError = (event: Event): void => {
    if (this.#closeInfo !== undefined) return;
    const error = detailOf(event);
    this.#end(closeInfoOf(error));
    // An internal failure of the library: it will not stop the connection itself.
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
    this.#credit.close();
    const opens = [...this.#opens];
    for (const incoming of [...this.#incoming]) incoming.lost(error);
    for (const stream of [...this.#streams]) stream.terminate(error);
    this.#transport.terminate(error);
    this.#earlyControl.length = 0;
    this.#control = undefined;
    try {
      this.#host.connectionEnded(this);
    } catch (failure) {
      this.report('connectionEnded', failure);
    }
    // Not from inside a library event handler: the runtime may call back in.
    // The opens in flight fail after the close is told: the runtime answers
    // their requests with what the close means (a refusal, for one), not
    // with a bare stream failure.
    queueMicrotask(() => {
      this.#events.emit({ type: 'close', info });
      for (const open of opens) open.fail(error);
    });
  }
}
