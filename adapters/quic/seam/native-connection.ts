/**
 * The native path of one library connection: once the library has set the
 * connection up (registered it, and for its TLS handshake), peerline moves
 * bytes between the UDP socket, quiche and its streams itself. The library
 * keeps what it does well (handshake, retry, certificate verification,
 * start, stop, keep-alive) and loses what it costs per packet (figures in
 * docs/PERFORMANCE.md):
 *
 * - Sending: the library's `send()` allocates a buffer per packet, wraps each
 *   packet in an event that its client or server forwards to a promisified
 *   UDP send. Here every send asked for during one turn of the event loop
 *   becomes one flush at its end (so ACKs and answers share packets), into
 *   one reused buffer, straight to the UDP socket. Used once the peer is
 *   verified: before that the library's own `send()` runs the verify callback.
 * - Receiving: a short-header datagram for a started connection goes from the
 *   socket to quiche directly (`SocketPath` routes it by connection id); the
 *   library parses a header object, builds an id and takes a lock per packet.
 * - Streams: `processStreams` hands quiche's readable streams to
 *   `NativeStream`s (no QUICStream, no web streams, no events, no locks).
 * - quiche's timer: one plain setTimeout, re-armed only when quiche's next
 *   deadline moves earlier (the library builds an AbortController-backed
 *   Timer after every send).
 * - `recvLock` (still used by the library's receive path during the
 *   handshake): a promise chain instead of an async-locks Lock, whose every
 *   use builds a timed-cancellable context.
 */
import { errors as quicErrors, events as quicEvents, native, type QUICConnection } from '@matrixai/quic';
import { TransportError } from '../../../protocol/adapter.js';
import { connectionInternals, type ConnectionInternals, type NativeConnection, type RecvInfo } from './internals.js';
import { NativeStream, SHUTDOWN_READ, SHUTDOWN_WRITE, shutdownStream, type NativeStreamOwner } from './native-stream.js';
import type { StreamTransport, TransportStream } from './transport.js';

/** The path's link to its socket (see `socket.ts`). */
export interface DatagramSink {
  /** Sends `length` bytes of `buffer` (copied) to `host`:`port`. */
  send(buffer: Uint8Array, length: number, port: number, host: string): void;
  /** Routes short-header datagrams for `key` to `path` (undefined: stop routing them). */
  route(key: string, path: NativePath | undefined): void;
}

/** One buffer for every packet quiche writes: sends are synchronous, the sink copies. */
const sendScratch = new Uint8Array(65_536);
/**
 * The same buffer cut to quiche's default datagram size, for the handshake:
 * quiche pads a dialler's datagram that carries an Initial packet to the
 * buffer's size (up to the largest datagram the listener accepts, 16 KB on
 * loopback), and the dialler's last handshake flight carries one (its ACK of
 * the listener's Initial) along with its Finished and its hello.
 */
const handshakeScratch = sendScratch.subarray(0, native.quiche.MAX_DATAGRAM_SIZE);

/** A FIFO mutex with the one method the library's `recv()` uses. */
class ChainLock {
  #tail: Promise<unknown> = Promise.resolve();

  withF<T>(f: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(() => f());
    this.#tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }
}

/**
 * Which peer-initiated stream ids were used: quiche lists a stream as
 * readable again after we are done with it (a late frame), and such a
 * stream must not come back as a new one.
 */
class PeerStreamIds {
  /** Per id type (id & 3): every id up to this one was used. */
  readonly #floor = [-4, -3, -2, -1];
  readonly #above = new Set<number>();

  /** True (and marked used) when `id` was not used before. */
  claim(id: number): boolean {
    const type = id & 3;
    const floor = this.#floor[type]!;
    if (id <= floor || this.#above.has(id)) return false;
    if (id !== floor + 4) {
      this.#above.add(id);
      return true;
    }
    let next = id;
    while (this.#above.delete(next + 4)) next += 4;
    this.#floor[type] = next;
    return true;
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class NativePath implements StreamTransport, NativeStreamOwner {
  readonly path = 'native' as const;
  readonly conn: NativeConnection;
  readonly #quic: QUICConnection;
  readonly #c: ConnectionInternals;
  readonly #sink: DatagramSink;
  readonly #onError: (where: string, error: unknown) => void;
  readonly #librarySend: () => Promise<void>;
  readonly #streams = new Map<number, NativeStream>();
  readonly #blocked = new Set<NativeStream>();
  readonly #peerIds = new PeerStreamIds();
  #nextLocal: number;
  #onStream: ((stream: TransportStream) => void) | undefined;
  readonly #early: NativeStream[] = [];
  readonly #onReceive = new Set<() => void>();
  #terminated = false;
  #routeKey: string | undefined;
  #stopping = false;
  #peerErrorSent = false;
  #flushScheduled = false;
  #writeFlushQueued = false;
  #flushWaiters: Array<() => void> | undefined;
  readonly #recvInfo: RecvInfo;
  /** The remote has answered (always, on the listener's side): datagrams go out natively. */
  #heard: boolean;
  /** The verify callback is running. */
  #verifying = false;
  /** A flush ran after the peer was verified: no Initial packet is left to send. */
  #pastHandshake = false;

  // quiche's timer.
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerDue = Infinity;
  #closedReported = false;

  /** Takes the connection over; must run before its first `send()` (at registration). */
  constructor(quic: QUICConnection, sink: DatagramSink, onError: (where: string, error: unknown) => void) {
    this.#quic = quic;
    this.#c = connectionInternals(quic);
    this.conn = this.#c.conn;
    this.#sink = sink;
    this.#onError = onError;
    this.#nextLocal = this.#c.type === 'client' ? 0 : 1;
    this.#recvInfo = { to: { host: '', port: 0 }, from: { host: '', port: 0 } };
    const c = this.#c;
    this.#librarySend = c.send.bind(quic);
    c.recvLock = new ChainLock();
    c.processStreams = () => this.#processStreams();
    c.setConnTimeoutTimer = () => this.#armTimer();
    c.send = () => this.#send();
    // A dialler's datagrams take the library's send until the listener has
    // answered: that send fails the dial at once when the address cannot be
    // sent to (EINVAL, ENETUNREACH), instead of at the connect timeout.
    this.#heard = c.type === 'server';
    if (!this.#heard) {
      const recv = c.recv;
      c.recv = (...args: Parameters<typeof recv>) => {
        this.#heard = true;
        c.recv = recv;
        return recv.apply(quic, args);
      };
    }
    quic.addEventListener(quicEvents.EventQUICConnectionStarted.name, this.#onStarted, { once: true });
    quic.addEventListener(quicEvents.EventQUICConnectionStop.name, this.#onStop, { once: true });
  }

  // ------------------------------------------------------------- streams

  creditLeft(): number {
    try {
      return this.conn.peerStreamsLeftBidi();
    } catch {
      return 0;
    }
  }

  open(): TransportStream {
    if (this.#terminated) throw new TransportError('closed', 'the connection is closed');
    const id = this.#nextLocal;
    try {
      // quiche makes a stream's state on its first write; an empty one makes it now.
      this.conn.streamSend(id, new Uint8Array(0), false);
    } catch (error) {
      const message = describe(error);
      throw new TransportError(message === 'StreamLimit' ? 'stream-limit' : 'closed', `cannot open a stream: ${message}`);
    }
    this.#nextLocal += 4;
    const stream = new NativeStream(this, id);
    this.#streams.set(id, stream);
    return stream;
  }

  onStream(handler: (stream: TransportStream) => void): void {
    this.#onStream = handler;
    for (const stream of this.#early.splice(0)) handler(stream);
  }

  onReceive(handler: () => void): () => void {
    this.#onReceive.add(handler);
    return () => void this.#onReceive.delete(handler);
  }

  terminate(error: TransportError): void {
    if (this.#terminated) return;
    this.#terminated = true;
    this.#early.length = 0;
    this.#onStream = undefined;
    this.#onReceive.clear();
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    this.#blocked.clear();
    for (const stream of streams) stream.fail(error);
    this.#unroute();
  }

  // NativeStreamOwner

  wake(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(this.#flushNow);
  }

  /**
   * Written bytes go out at the end of the current task, before the next
   * datagram is handled, not at the end of the turn: an answer leaves as
   * soon as it is written, and no written byte is still unsent when a
   * STOP_SENDING is handled (quiche 0.18 then never frees the stream; it
   * does not either when the bytes were sent but not yet acknowledged, see
   * docs/PERFORMANCE.md). quiche takes no more than the congestion window
   * allows, so a flush right after the writes sends all of it.
   */
  written(): void {
    if (this.#writeFlushQueued) return;
    this.#writeFlushQueued = true;
    queueMicrotask(this.#flushWrites);
  }

  readonly #flushWrites = (): void => {
    this.#writeFlushQueued = false;
    this.#sendNow();
  };

  blocked(stream: NativeStream, waiting: boolean): void {
    if (waiting) this.#blocked.add(stream);
    else this.#blocked.delete(stream);
  }

  released(stream: NativeStream): void {
    if (this.#streams.get(stream.id) === stream) this.#streams.delete(stream.id);
  }

  #processStreams(): void {
    for (const id of this.conn.readable()) {
      let stream = this.#streams.get(id);
      if (stream === undefined) {
        stream = this.#adopt(id);
        if (stream === undefined) continue;
      }
      stream.readable();
    }
    if (this.#blocked.size > 0) for (const stream of [...this.#blocked]) stream.writable();
  }

  /** A stream quiche lists that we have no object for: a new one from the peer, or one that is over. */
  #adopt(id: number): NativeStream | undefined {
    const local = (id & 1) === (this.#c.type === 'client' ? 0 : 1);
    if (local || !this.#peerIds.claim(id)) return undefined;
    if (this.#terminated) {
      shutdownStream(this.conn, id, SHUTDOWN_READ, 0);
      shutdownStream(this.conn, id, SHUTDOWN_WRITE, 0);
      return undefined;
    }
    const stream = new NativeStream(this, id);
    this.#streams.set(id, stream);
    if (this.#onStream !== undefined) this.#onStream(stream);
    else this.#early.push(stream);
    return stream;
  }

  // ------------------------------------------------------------- receive

  /** A short-header datagram for this connection, straight from the socket. */
  receive(data: Uint8Array, host: string, port: number): void {
    const info = this.#recvInfo;
    info.from.host = host;
    info.from.port = port;
    try {
      this.conn.recv(data, info);
    } catch (error) {
      this.#recvFailed(error);
      return;
    }
    const c = this.#c;
    if (c._remotePort !== port || c._remoteHost !== host) {
      c._remoteHost = host;
      c._remotePort = port;
    }
    this.#processStreams();
    for (const handler of this.#onReceive) handler();
    this.wake();
  }

  /** As the library's `recv()` does when quiche refuses a packet. */
  #recvFailed(error: unknown): void {
    const localError = this.conn.localError();
    let detail: quicErrors.ErrorQUICConnectionInternal<unknown> | quicErrors.ErrorQUICConnectionLocal<unknown>;
    if (localError === null) {
      detail = new quicErrors.ErrorQUICConnectionInternal('Failed connection recv due with unknown error', { cause: error });
    } else if (describe(error) === 'TlsFail') {
      detail = new quicErrors.ErrorQUICConnectionLocalTLS('Failed connection due to native TLS verification', { cause: error, data: localError });
    } else {
      detail = new quicErrors.ErrorQUICConnectionLocal('Failed connection due to local error', { cause: error, data: localError });
    }
    this.#c.dispatchEvent(new quicEvents.EventQUICConnectionError({ detail }));
  }

  readonly #onStarted = (): void => {
    if (this.#stopping || this.#terminated) return;
    let key: string;
    try {
      key = Buffer.from(this.conn.sourceId()).toString('latin1');
      this.#recvInfo.to.host = this.#quic.localHost;
      this.#recvInfo.to.port = this.#quic.localPort;
    } catch {
      return;
    }
    this.#routeKey = key;
    this.#sink.route(key, this);
  };

  readonly #onStop = (): void => {
    this.#stopping = true;
    this.#unroute();
  };

  #unroute(): void {
    if (this.#routeKey === undefined) return;
    this.#sink.route(this.#routeKey, undefined);
    this.#routeKey = undefined;
  }

  // ---------------------------------------------------------------- send

  /**
   * The library's `send()`, called after every datagram received, by the
   * dialler's `start()`, and for the final close. The datagrams go out at
   * the end of the turn (`#corked`); before that, once TLS is done, the peer
   * is verified as the library does it (the verify callback, then the
   * connection counts as established and its streams are handed over), but
   * before anything more is sent rather than after. A dialler's last
   * handshake flight then leaves with what its first turn as a verified
   * connection writes (the application's hello), in one datagram.
   */
  #send(): Promise<void> {
    if (!this.#heard) return this.#librarySend();
    if (!this.#c.secureEstablished) this.#verify();
    return this.#corked();
  }

  /** Runs the verify callback once TLS is done (the library's steps, in its order). */
  #verify(): void {
    const c = this.#c;
    const conn = this.conn;
    // A close of ours not sent yet (a refusal) counts as closing: the library checks after its send, when it went out.
    if (this.#verifying || c.secureEstablished || !conn.isEstablished() || this.#closing()) return;
    const config = c.config;
    // Without a callback the library marks the connection established itself, in `recv()`.
    if (!config.verifyPeer || config.verifyCallback == null) return;
    this.#verifying = true;
    let answer: Promise<number | undefined | void>;
    try {
      answer = Promise.resolve(config.verifyCallback(conn.peerCertChain() ?? [], c.caDERs ?? []));
    } catch (error) {
      answer = Promise.reject(error);
    }
    answer.then(
      (cryptoError) => {
        this.#verifying = false;
        if (c.secureEstablished || this.#closing()) return;
        if (cryptoError != null) {
          this.#refuse(cryptoError);
          return;
        }
        c.resolveSecureEstablishedP();
        this.#processStreams();
        this.wake();
      },
      (error: unknown) => {
        this.#verifying = false;
        this.#onError('verify callback', error);
        if (!c.secureEstablished && !this.#closing()) this.#refuse(native.CryptoError.InternalError);
      },
    );
  }

  /** Closed, draining, or closed by us with the close not sent yet. */
  #closing(): boolean {
    const conn = this.conn;
    return conn.isClosed() || conn.isDraining() || conn.localError() !== null;
  }

  /**
   * The verify callback refused the peer: closed with its TLS alert, as the
   * library does, after what quiche already had to send (a dialler's
   * Finished): quiche sends the close in the newest packet space, and a
   * listener ignores 1-RTT packets until the handshake is complete, so
   * without the Finished it would not hear of the close before its
   * handshake timeout.
   */
  #refuse(cryptoError: number): void {
    this.#flush();
    this.conn.close(false, cryptoError, Buffer.from(''));
    const detail = new quicErrors.ErrorQUICConnectionLocalTLS('Failed connection due to custom TLS verification', {
      data: this.conn.localError() ?? { isApp: false, errorCode: cryptoError, reason: new Uint8Array() },
    });
    this.#c.dispatchEvent(new quicEvents.EventQUICConnectionError({ detail }));
    this.wake();
  }

  /** Sends what quiche has now: natively once the remote answered, else through the library. */
  #sendNow(): void {
    if (this.#heard) this.#flush();
    else void this.#librarySend().catch((error: unknown) => this.#onError('send', error));
  }

  /** What the library's callers of `send()` get: a promise of the next flush. */
  #corked(): Promise<void> {
    this.wake();
    return new Promise<void>((resolve) => {
      (this.#flushWaiters ??= []).push(resolve);
    });
  }

  readonly #flushNow = (): void => {
    this.#flushScheduled = false;
    const waiters = this.#flushWaiters;
    this.#flushWaiters = undefined;
    this.#sendNow();
    if (waiters !== undefined) for (const resolve of waiters) resolve();
  };

  #flush(): void {
    const conn = this.conn;
    const out = this.#pastHandshake ? sendScratch : handshakeScratch;
    for (;;) {
      let result: ReturnType<NativeConnection['send']>;
      try {
        result = conn.send(out);
      } catch (error) {
        const detail = new quicErrors.ErrorQUICConnectionInternal('Failed connection send with unknown internal error', { cause: error });
        this.#c.dispatchEvent(new quicEvents.EventQUICConnectionError({ detail }));
        return;
      }
      if (result === null) break;
      const [length, info] = result;
      this.#sink.send(out, length, info.to.port, info.to.host);
    }
    if (!this.#pastHandshake && this.#c.secureEstablished) this.#pastHandshake = true;
    this.#armTimer();
    this.#reportPeerClose();
  }

  /** As the library's `send()` does: a close from the peer becomes the connection's error event, once. */
  #reportPeerClose(): void {
    if (this.#stopping || this.#peerErrorSent) return;
    const peerError = this.conn.peerError();
    if (peerError === null) return;
    this.#peerErrorSent = true;
    const message = `Peer closed with ${peerError.isApp ? 'application' : 'transport'} code ${peerError.errorCode}`;
    const tls = peerError.errorCode >= native.quiche.CRYPTO_ERROR_START && peerError.errorCode <= native.quiche.CRYPTO_ERROR_STOP;
    const detail = tls
      ? new quicErrors.ErrorQUICConnectionPeerTLS(message, { data: peerError })
      : new quicErrors.ErrorQUICConnectionPeer(message, { data: peerError });
    this.#c.dispatchEvent(new quicEvents.EventQUICConnectionError({ detail }));
  }

  // --------------------------------------------------------------- timer

  /** Arms quiche's timer for its next deadline, unless an earlier one is armed (it re-arms when it fires). */
  #armTimer(): void {
    const conn = this.conn;
    const ms = conn.timeout();
    if (ms === null) {
      this.#clearTimer();
      if (conn.isClosed()) this.#closed();
      return;
    }
    const due = performance.now() + ms;
    if (this.#timer !== undefined && this.#timerDue <= due) return;
    this.#clearTimer();
    this.#timerDue = due;
    // Plus 1 ms, as the library does, for clock differences with quiche.
    this.#timer = setTimeout(this.#fire, ms + 1);
  }

  #clearTimer(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerDue = Infinity;
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#timerDue = Infinity;
    const conn = this.conn;
    try {
      // Early calls are harmless: quiche acts only on deadlines that passed.
      conn.onTimeout();
      if (conn.isClosed()) {
        this.#closed();
        return;
      }
    } catch (error) {
      this.#onError('timer', error);
      return;
    }
    this.#sendNow();
  };

  /** quiche says closed: what the library's timer does then, once. */
  #closed(): void {
    if (this.#closedReported) return;
    this.#closedReported = true;
    this.#unroute();
    this.#c.resolveClosedP();
    if (this.conn.isTimedOut()) {
      this.#c.dispatchEvent(new quicEvents.EventQUICConnectionError({ detail: new quicErrors.ErrorQUICConnectionIdleTimeout() }));
    }
  }
}
