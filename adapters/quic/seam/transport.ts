/**
 * What the rest of the QUIC adapter sees of a connection's streams, whichever
 * path carries them: the native path (`native-stream.ts`, straight on
 * quiche) or the library's own streams (`library-stream.ts`, the path taken
 * when the probe fails or `tuning: false`).
 */
import { TransportError } from '../../../protocol/adapter.js';
import { StreamCode } from '../wire.js';

/** One QUIC stream, both directions. */
export interface TransportStream {
  /** The QUIC stream id. */
  readonly id: number;
  /**
   * The next bytes the remote sent; null once it finished its direction
   * (FIN). Rejects with a TransportError when the remote reset the stream,
   * we stopped reading it, or the connection ended. One read at a time.
   */
  read(): Promise<Uint8Array | null>;
  /**
   * Writes all of `bytes`, waiting for flow control. Rejects with a
   * TransportError when the remote stopped reading (STOP_SENDING), the
   * stream is gone, we reset it, or the connection ended. Writes queue in
   * order.
   */
  write(bytes: Uint8Array): Promise<void>;
  /**
   * Ends our direction: `bytes` (at least one, see wire.ts) and the FIN in
   * one write, after the writes queued before. Never rejects.
   */
  finish(bytes: Uint8Array): Promise<void>;
  /** RESET_STREAM on our direction with `code`; writes still queued fail. Idempotent. */
  reset(code: number, reason: string): void;
  /** STOP_SENDING on the remote's direction with `code`; a pending read fails. Idempotent. */
  stop(code: number, reason: string): void;
}

/** A connection's streams, as the adapter uses them. */
export interface StreamTransport {
  /** Which path carries this connection's streams. */
  readonly path: 'native' | 'library';
  /** Streams we may open now (the remote's credit, less what we opened). */
  creditLeft(): number;
  /** Opens a stream. Throws a TransportError (`stream-limit`, `closed`) when it cannot. */
  open(): TransportStream;
  /** Streams the remote opens; those that arrived before this call are handed over now, in order. */
  onStream(handler: (stream: TransportStream) => void): void;
  /** Called after packets arrive (stream credit may have come back); returns the unsubscribe. */
  onReceive(handler: () => void): () => void;
  /** The connection ended: every stream fails with `error`, nothing more is handed over. */
  terminate(error: TransportError): void;
}

/** What our side sees when the remote resets its direction (`read`) or stops ours (`write`) with `code`. */
export function remoteStreamError(type: 'read' | 'write', code: number): TransportError {
  if (code === StreamCode.ProtocolViolation) return new TransportError('protocol', 'the remote reset the stream: protocol violation');
  if (code === StreamCode.Aborted) return new TransportError('aborted', 'the remote aborted the stream');
  return type === 'write'
    ? new TransportError('closed', 'the remote stopped reading the stream')
    : new TransportError('aborted', `the remote reset the stream (code ${code})`);
}

/** What our side sees after resetting or stopping a stream itself with `code`. */
export function localStreamError(code: number, reason: string): TransportError {
  return new TransportError(code === StreamCode.ProtocolViolation ? 'protocol' : 'aborted', reason);
}
