/**
 * A stream the remote opened: its header is read (bounded in time and
 * size), then the runtime accepts it (ACK) or rejects it (NACK). A control
 * stream is claimed by the connection instead.
 */
import { TransportError, type IncomingStream, type Stream } from '../../protocol/adapter.js';
import type { TransportStream } from './seam/index.js';
import { QuicStreamEnd, abandon, drain, type StreamOwner } from './stream.js';
import { ACK, StreamCode, encodeNack } from './wire.js';

/** What an incoming stream needs from its connection. */
export interface IncomingHost extends StreamOwner {
  nextStreamId(transport: TransportStream): string;
  /** The stream left the header stage: `stream` when it was accepted and is still open. */
  incomingDone(incoming: Incoming, stream: QuicStreamEnd | undefined): void;
}

export class Incoming implements IncomingStream {
  readonly transport: TransportStream;
  state: 'header' | 'pending' | 'accepted' | 'rejected' | 'lost' | 'claimed' = 'header';
  #protocol = '';
  #leftover: Uint8Array[] = [];
  #stream: QuicStreamEnd | undefined;
  #lostError: TransportError | undefined;
  readonly #host: IncomingHost;

  constructor(host: IncomingHost, transport: TransportStream) {
    this.#host = host;
    this.transport = transport;
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
    this.#host.report('malformed stream header', new Error(why));
    abandon(this.transport, StreamCode.ProtocolViolation, why);
    this.#host.incomingDone(this, undefined);
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
    if (this.#host.connectionError() !== undefined) {
      abandon(this.transport, StreamCode.Aborted, error.message);
    } else {
      void this.transport.finish(encodeNack(error.message));
      void drain(this.transport, this.#host);
    }
    this.#host.incomingDone(this, undefined);
  }

  accept(): Stream {
    if (this.#stream !== undefined) return this.#stream;
    if (this.state === 'rejected') throw new TransportError('protocol', 'the stream was already rejected');
    const stream = new QuicStreamEnd({
      id: this.#host.nextStreamId(this.transport),
      protocol: this.#protocol,
      transport: this.transport,
      leftover: this.#leftover,
      owner: this.#host,
    });
    this.#stream = stream;
    this.#leftover = [];
    if (this.state !== 'pending') {
      stream.terminate(this.#lostError ?? this.#host.connectionError() ?? new TransportError('closed', 'the stream is gone'));
      return stream;
    }
    this.state = 'accepted';
    this.transport.write(Uint8Array.of(ACK)).catch((error: unknown) => {
      // No ACK went out: the stream's write direction is already over (the
      // remote stopped it, or it closed). The opener gets no stream either.
      stream.terminate(error instanceof TransportError ? error : new TransportError('closed', 'the stream closed before its ACK'));
    });
    this.#host.incomingDone(this, stream);
    return stream;
  }

  reject(reason: string): void {
    if (this.state !== 'pending') return;
    this.state = 'rejected';
    // The NACK and the FIN in one QUIC write, then the opener's direction is
    // read to its FIN (see wire.ts).
    void this.transport.finish(encodeNack(String(reason)));
    void drain(this.transport, this.#host);
    this.#host.incomingDone(this, undefined);
  }
}
