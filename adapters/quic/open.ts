/**
 * An outbound stream open: credit (see `credit.ts`), the header naming the
 * protocol, then the remote's ACK or NACK.
 */
import { TransportError, type Stream } from '../../protocol/adapter.js';
import type { TransportStream } from './seam/index.js';
import { QuicStreamEnd, abandon, asTransportError, drain, type StreamOwner } from './stream.js';
import { ByteQueue } from '../../protocol/byte-queue.js';
import { ABORT_FRAME, ACK, END_FRAME, NACK, StreamCode, WireError, decodeUtf8, fill } from './wire.js';
import type { CreditWaiter } from './credit.js';

/** What an open needs from its connection. */
export interface OpenHost extends StreamOwner {
  /** Opens the QUIC stream (throws a TransportError when it cannot). */
  openTransport(): TransportStream;
  /** The stream id peerline shows for a QUIC stream. */
  nextStreamId(transport: TransportStream): string;
  /** The open settled (with the stream, or without). */
  openDone(open: OpenAttempt, stream: QuicStreamEnd | undefined): void;
}

function noop(): void {}

export class OpenAttempt implements CreditWaiter {
  readonly #host: OpenHost;
  readonly #protocol: string;
  readonly #header: Uint8Array;
  readonly #signal: AbortSignal | undefined;
  readonly #resolve: (stream: Stream) => void;
  readonly #reject: (error: unknown) => void;
  #settled = false;
  #transport: TransportStream | undefined;
  #headerWritten: Promise<void> = Promise.resolve();
  readonly #onAbort = (): void => {
    this.fail(new TransportError('aborted', 'stream open aborted'));
  };

  constructor(
    host: OpenHost,
    protocol: string,
    header: Uint8Array,
    signal: AbortSignal | undefined,
    resolve: (stream: Stream) => void,
    reject: (error: unknown) => void,
  ) {
    this.#host = host;
    this.#protocol = protocol;
    this.#header = header;
    this.#signal = signal;
    this.#resolve = resolve;
    this.#reject = reject;
    signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  start(): void {
    if (this.#settled) return;
    let transport: TransportStream;
    try {
      transport = this.#host.openTransport();
    } catch (error) {
      this.fail(
        error instanceof TransportError && error.kind === 'stream-limit'
          ? error
          : (this.#host.connectionError() ?? asTransportError(error, this.#host)),
      );
      return;
    }
    this.#transport = transport;
    // A failed write shows up on the read side (reset, or the connection's end).
    this.#headerWritten = transport.write(this.#header).catch(noop);
    void this.#awaitAnswer(transport);
  }

  async #awaitAnswer(transport: TransportStream): Promise<void> {
    const queue = new ByteQueue();
    try {
      if (!(await fill(transport, queue, 1))) {
        this.fail(new TransportError('closed', 'the remote closed the stream without answering'));
        return;
      }
      if (this.#settled) return;
      const answer = queue.take(1)[0];
      if (answer === ACK) {
        const stream = new QuicStreamEnd({
          id: this.#host.nextStreamId(transport),
          protocol: this.#protocol,
          transport,
          leftover: queue.drain(),
          owner: this.#host,
        });
        this.#settle(stream);
        this.#resolve(stream);
        return;
      }
      if (answer === NACK) {
        let reason = 'rejected by the remote';
        if (await fill(transport, queue, 2)) {
          const head = queue.take(2);
          const length = (head[0]! << 8) | head[1]!;
          if (await fill(transport, queue, length)) reason = decodeUtf8(queue.take(length)) || reason;
        }
        if (this.#settled) return;
        this.#settle(undefined);
        // Our direction ends with a byte and the FIN; the NACK's FIN is read:
        // that is what lets QUIC free the stream on both sides.
        void this.#headerWritten.then(() => transport.finish(END_FRAME));
        void drain(transport, this.#host);
        this.#reject(new TransportError('rejected', reason));
        return;
      }
      this.fail(new TransportError('protocol', `unknown stream answer ${String(answer)}`), 'reset');
    } catch (error) {
      // The connection ended: it fails this open itself, once the close is told.
      if (this.#host.connectionError() !== undefined) return;
      this.fail(error instanceof WireError ? new TransportError('protocol', error.message) : asTransportError(error, this.#host));
    }
  }

  /**
   * Rejects (once). A QUIC stream already made is abandoned with ABORT (its
   * remote direction drained to the FIN), or reset when the connection is
   * gone or the remote broke the protocol.
   */
  fail(error: TransportError, how: 'abort' | 'reset' = 'abort'): void {
    if (this.#settled) return;
    this.#settle(undefined);
    const transport = this.#transport;
    if (transport !== undefined) {
      if (how === 'reset' || this.#host.connectionError() !== undefined) {
        abandon(transport, how === 'reset' ? StreamCode.ProtocolViolation : StreamCode.Aborted, error.message);
      } else {
        void this.#headerWritten.then(() => transport.finish(ABORT_FRAME));
        void drain(transport, this.#host);
      }
    }
    this.#reject(error);
  }

  #settle(stream: QuicStreamEnd | undefined): void {
    this.#settled = true;
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#host.openDone(this, stream);
  }
}
