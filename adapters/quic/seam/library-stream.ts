/**
 * The library's own path: streams are @matrixai/quic QUICStreams, read and
 * written through their web streams, exactly as the library ships them. Used
 * when the probe found internals missing or different, or with
 * `createQuicAdapter({ tuning: false })`. Slower (see docs/PERFORMANCE.md),
 * and with the library's known faults (a write can wait for ever once the
 * remote stopped a stream quiche already collected), but it only uses the
 * library's public API, plus quiche's `peerStreamsLeftBidi` and a write with
 * FIN where the native connection has them.
 */
import { errors as quicErrors, events as quicEvents, type QUICConnection, type QUICStream } from '@matrixai/quic';
import { TransportError } from '../../../protocol/adapter.js';
import { StreamCode } from '../wire.js';
import { connectionInternals, detailOf, nativeShape, type NativeConnection } from './internals.js';
import { localStreamError, type StreamTransport, type TransportStream } from './transport.js';

/** The reason peerline gives the library when it resets or stops a stream: the code goes on the wire. */
export class LocalReset extends Error {
  override name = 'LocalReset';
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

/** The library's `reasonToCode`: our reason's code (0 for anything else). */
export function reasonToCode(_type: 'read' | 'write', reason?: unknown): number {
  return reason instanceof LocalReset ? reason.code : StreamCode.Closed;
}

function noop(): void {}

/** Whatever a QUICStream reader or writer rejected with, as a TransportError. */
function asTransportError(error: unknown, connectionError: () => TransportError | undefined): TransportError {
  if (error instanceof TransportError) return error;
  if (error instanceof LocalReset) return localStreamError(error.code, error.message);
  return connectionError() ?? new TransportError('closed', `stream failed: ${error instanceof Error ? error.message : String(error)}`);
}

class LibraryStream implements TransportStream {
  readonly id: number;
  readonly #quic: QUICStream;
  readonly #native: NativeConnection | undefined;
  #readerTaken: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #writerTaken: WritableStreamDefaultWriter<Uint8Array> | undefined;
  readonly #connectionError: () => TransportError | undefined;

  constructor(quic: QUICStream, native: NativeConnection | undefined, connectionError: () => TransportError | undefined) {
    this.id = quic.streamId;
    this.#quic = quic;
    this.#native = native;
    this.#connectionError = connectionError;
  }

  /** The QUIC stream's reader and writer, taken on first use and kept: nothing else reads or writes it. */
  get #reader(): ReadableStreamDefaultReader<Uint8Array> {
    return (this.#readerTaken ??= this.#quic.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>);
  }

  get #writer(): WritableStreamDefaultWriter<Uint8Array> {
    return (this.#writerTaken ??= this.#quic.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>);
  }

  async read(): Promise<Uint8Array | null> {
    try {
      const { done, value } = await this.#reader.read();
      return done ? null : value;
    } catch (error) {
      throw asTransportError(error, this.#connectionError);
    }
  }

  async write(bytes: Uint8Array): Promise<void> {
    try {
      // On Node 20 a write to a writable that already closed throws at once
      // instead of rejecting (nodejs/node#57272): the same failure.
      await this.#writer.write(bytes);
    } catch (error) {
      throw asTransportError(error, this.#connectionError);
    }
  }

  async finish(bytes: Uint8Array): Promise<void> {
    try {
      // The library has no write with FIN: quiche's, where it is reachable,
      // so that the FIN travels with the byte (see wire.ts); the library's
      // close() then only records a FIN that is already there.
      const sent = this.#native !== undefined && this.#native.streamSend(this.id, bytes, true) === bytes.length;
      if (!sent) await this.#writer.write(bytes);
      await this.#writer.close();
    } catch {
      // The stream or the connection is gone; nothing left to finish.
    }
  }

  reset(code: number, reason: string): void {
    try {
      this.#writer.abort(new LocalReset(code, reason)).catch(noop);
    } catch {
      // Already over.
    }
  }

  stop(code: number, reason: string): void {
    try {
      this.#reader.cancel(new LocalReset(code, reason)).catch(noop);
    } catch {
      // Already over.
    }
  }

  /** The connection ended: both directions reset quietly. */
  fail(): void {
    this.stop(StreamCode.Aborted, 'connection closed');
    this.reset(StreamCode.Aborted, 'connection closed');
  }

  get quic(): QUICStream {
    return this.#quic;
  }
}

export class LibraryPath implements StreamTransport {
  readonly path = 'library' as const;
  readonly #quic: QUICConnection;
  readonly #native: NativeConnection | undefined;
  readonly #onError: (where: string, error: unknown) => void;
  readonly #streams = new Set<LibraryStream>();
  readonly #seen = new WeakSet<QUICStream>();
  #onStream: ((stream: TransportStream) => void) | undefined;
  #error: TransportError | undefined;

  constructor(quic: QUICConnection, onError: (where: string, error: unknown) => void) {
    this.#quic = quic;
    const native = connectionInternals(quic).conn;
    this.#native = nativeShape(native).length === 0 ? native : undefined;
    this.#onError = onError;
  }

  creditLeft(): number {
    if (this.#native === undefined) return 1;
    try {
      return this.#native.peerStreamsLeftBidi();
    } catch {
      return 0;
    }
  }

  open(): TransportStream {
    let quic: QUICStream;
    try {
      quic = this.#quic.newStream('bidi');
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new TransportError(error instanceof quicErrors.ErrorQUICStreamLimit ? 'stream-limit' : 'closed', `cannot open a stream: ${message}`);
    }
    return this.#adopt(quic);
  }

  onStream(handler: (stream: TransportStream) => void): void {
    this.#onStream = handler;
    this.#quic.addEventListener(quicEvents.EventQUICConnectionStream.name, this.#onQuicStream);
    // Peer streams the library made before anyone listened.
    for (const quic of connectionInternals(this.#quic).streamMap?.values() ?? []) {
      if (quic.initiated === 'peer') this.#peerStream(quic);
    }
  }

  onReceive(handler: () => void): () => void {
    // The library follows every received packet with a send.
    this.#quic.addEventListener(quicEvents.EventQUICConnectionSend.name, handler);
    return () => this.#quic.removeEventListener(quicEvents.EventQUICConnectionSend.name, handler);
  }

  terminate(error: TransportError): void {
    if (this.#error !== undefined) return;
    this.#error = error;
    this.#quic.removeEventListener(quicEvents.EventQUICConnectionStream.name, this.#onQuicStream);
    this.#onStream = undefined;
    for (const stream of this.#streams) stream.fail();
    this.#streams.clear();
  }

  readonly #onQuicStream = (event: Event): void => {
    this.#peerStream(detailOf<QUICStream>(event));
  };

  #peerStream(quic: QUICStream): void {
    if (this.#seen.has(quic)) return;
    const stream = this.#adopt(quic);
    if (this.#error !== undefined) stream.fail();
    else this.#onStream?.(stream);
  }

  #adopt(quic: QUICStream): LibraryStream {
    this.#seen.add(quic);
    // Replaces the library's default, which re-throws from its handler.
    quic.addEventListener('EventError', (event: Event) => {
      this.#onError(`stream ${quic.streamId}`, detailOf(event));
      try {
        quic.cancel(new LocalReset(StreamCode.Aborted, 'stream failed'));
      } catch {
        // Nothing more to do for this stream.
      }
    });
    const stream = new LibraryStream(quic, this.#native, () => this.#error);
    this.#streams.add(stream);
    void quic.closedP.then(() => this.#streams.delete(stream));
    return stream;
  }
}
