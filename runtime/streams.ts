import type { Stream } from '../protocol/adapter.js';
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

/**
 * A transport stream as handed to users. Its `readable` and `writable` are
 * read from the transport stream when first used, not when it is wrapped:
 * a transport may make them lazily (the memory network does), and a handler
 * that only closes the stream never pays for them.
 */
class WrappedStream implements PeerStream {
  readonly #stream: Stream;
  readonly peerId: string;
  readonly direction: 'inbound' | 'outbound';

  constructor(stream: Stream, peerId: string, direction: 'inbound' | 'outbound') {
    this.#stream = stream;
    this.peerId = peerId;
    this.direction = direction;
  }

  get id(): string {
    return this.#stream.id;
  }

  get protocol(): string {
    return this.#stream.protocol;
  }

  get readable(): ReadableStream<Uint8Array> {
    return this.#stream.readable;
  }

  get writable(): WritableStream<Uint8Array> {
    return this.#stream.writable;
  }

  get closed(): Promise<void> {
    return this.#stream.closed;
  }

  close(): void {
    this.#stream.close();
  }

  abort(reason?: string): void {
    this.#stream.abort(reason);
  }
}

export function wrapStream(stream: Stream, peerId: string, direction: 'inbound' | 'outbound'): PeerStream {
  return new WrappedStream(stream, peerId, direction);
}
