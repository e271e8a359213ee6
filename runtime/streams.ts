import type { Stream } from '../adapters/adapter.js';
import type { PeerlineError } from './errors.js';

/** A stream as peerline hands it to users: the transport stream plus who and what. */
export interface PeerStream extends Stream {
  readonly peerId: string;
  readonly direction: 'inbound' | 'outbound';
}

/** The single answer a stream request gets. */
export type StreamAnswer = { readonly ok: true; readonly stream: PeerStream } | { readonly ok: false; readonly error: PeerlineError };

/**
 * A stream request as it travels on `engine.requests`. `reply` is called
 * exactly once, with a stream or a typed error, and never synchronously from
 * `requests.next()` (like a promise's callbacks): an answer known at once
 * (INVALID_REQUEST, ENGINE_STOPPED, ABORTED, QUEUE_FULL, the error of a peer
 * backing off) comes on a microtask.
 */
export interface StreamRequest {
  readonly peerId: string;
  readonly protocol: string;
  readonly signal?: AbortSignal;
  /** Absolute time on the engine's clock after which the request fails with STREAM_TIMEOUT. */
  readonly deadline?: number;
  /** Wait while the peer backs off instead of failing at once (see `OpenStreamOptions.waitForReady`). */
  readonly waitForReady?: boolean;
  readonly reply: (answer: StreamAnswer) => void;
}

/** What a `withConnection` callback gets: a connection it may use until it returns. */
export interface LeasedConnection {
  readonly peerId: string;
  openStream(protocol: string, options?: { signal?: AbortSignal; timeoutMs?: number; waitForReady?: boolean }): Promise<PeerStream>;
}

/** Handler for inbound streams of one protocol. Its errors abort the stream, nothing more. */
export type StreamHandler = (stream: PeerStream) => void | Promise<void>;

export function wrapStream(stream: Stream, peerId: string, direction: 'inbound' | 'outbound'): PeerStream {
  return {
    id: stream.id,
    protocol: stream.protocol,
    readable: stream.readable,
    writable: stream.writable,
    closed: stream.closed,
    close: () => stream.close(),
    abort: (reason?: string) => stream.abort(reason),
    peerId,
    direction,
  };
}
