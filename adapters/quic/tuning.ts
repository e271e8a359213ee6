/**
 * Per-instance replacements for pieces of @matrixai/quic 2.0.9 that cost CPU
 * on every packet or stream, found by profiling stream opens on loopback
 * (figures in bench/quic/FINDINGS.md):
 *
 * 1. `QUICConnection.recvLock`: an @matrixai/async-locks Lock whose every
 *    acquisition builds a timed-cancellable context: an AbortController, a
 *    PromiseCancellable and an `ErrorAsyncLocksTimeout` with a captured stack,
 *    even with no timeout. It only has to serialise `recv()` calls, which a
 *    promise chain does (same FIFO order, same exclusion).
 * 2. `QUICConnection.setConnTimeoutTimer`, called after every `send()`: it
 *    re-arms quiche's timer through an @matrixai/timer `Timer` (again an
 *    AbortController and a PromiseCancellable per arm). The replacement keeps
 *    its logic (call `onTimeout()`, resolve `closedP` and report the idle
 *    timeout once quiche says closed, send, re-arm) on one plain setTimeout.
 * 3. `QUICConnection.send()` runs right after each packet is received, before
 *    the application has had a chance to answer: quiche then sends an
 *    ACK-only packet, and the answer goes in a second one, which the peer
 *    must receive and process too. Corked, every `send()` asked for during one
 *    turn of the event loop becomes one flush at its end (setImmediate), so
 *    the transport ACK and the application's bytes share packets
 *    (datagrams per stream open: 7.4 to 4.7). Callers still await a promise
 *    that settles after the real send. Only once the connection has started:
 *    during the handshake every send goes out at once.
 * 4. Event re-dispatch: every stream event is cloned onto its connection, and
 *    every connection event onto the server or client (`EventAll` listeners),
 *    for users who listen there. peerline listens on the objects themselves,
 *    so those listeners are removed.
 * 5. `QUICStream` destroy: its create-destroy lock is an async-locks
 *    RWLockWriter (a timed-cancellable context per use, as in 1). Streams
 *    only take it to destroy themselves; a small read-write lock does.
 *
 * Each replacement checks that the object has the expected shape first and
 * leaves it alone otherwise, so a library upgrade degrades to the stock
 * behaviour rather than breaking. `createQuicAdapter({ tuning: false })`
 * turns all of them off (the benchmarks compare both).
 */
import { errors as quicErrors, events as quicEvents, type QUICClient, type QUICConnection, type QUICServer, type QUICStream } from '@matrixai/quic';

/** The library internals the replacements touch (not in its typings). */
interface ConnectionInternals {
  recvLock?: { withF?: unknown };
  setConnTimeoutTimer?: unknown;
  resolveClosedP?: () => void;
  send?: () => Promise<void>;
  conn?: {
    timeout?: () => number | null;
    onTimeout?: () => void;
    isClosed?: () => boolean;
    isTimedOut?: () => boolean;
  };
  dispatchEvent(event: Event): boolean;
  handleEventQUICStream?: (event: Event) => void;
}

/** A FIFO mutex with the one method `recv()` uses. */
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

/** Which of replacements 1 to 3 `tuneConnection` applies (for the benchmarks). */
export interface ConnectionTuning {
  /** Replacement 1. @default true */
  readonly lock?: boolean;
  /** Replacement 2. @default true */
  readonly timer?: boolean;
  /** Replacement 3. @default true */
  readonly cork?: boolean;
}

/**
 * Applies replacements 1 to 3 to a connection. Must run before its first
 * `send()` (the socket's connection map hook does: connections are registered
 * before they start). Returns false when the shape did not match.
 */
export function tuneConnection(quic: QUICConnection, onError: (error: unknown) => void, parts: ConnectionTuning = {}): boolean {
  const c = quic as unknown as ConnectionInternals;
  const native = c.conn;
  if (
    typeof c.recvLock?.withF !== 'function' ||
    typeof c.setConnTimeoutTimer !== 'function' ||
    typeof c.resolveClosedP !== 'function' ||
    typeof c.send !== 'function' ||
    typeof native?.timeout !== 'function' ||
    typeof native.onTimeout !== 'function' ||
    typeof native.isClosed !== 'function' ||
    typeof native.isTimedOut !== 'function'
  ) {
    return false;
  }
  const conn = native as Required<NonNullable<ConnectionInternals['conn']>>;
  if (parts.lock !== false) c.recvLock = new ChainLock() as unknown as ConnectionInternals['recvLock'];
  if (parts.cork !== false) cork(quic, c);
  if (parts.timer !== false) replaceTimer(c, conn, onError);
  return true;
}

/**
 * Replacement 3: one flush per turn of the event loop, once the connection
 * has started. Not during the handshake: the library verifies the peer's
 * certificate inside send(), and a stream whose data arrived before that
 * verification but is processed while the connection is still starting is
 * refused.
 */
function cork(quic: QUICConnection, c: ConnectionInternals): void {
  const flush = c.send!.bind(quic) as () => Promise<void>;
  let started = false;
  quic.addEventListener(quicEvents.EventQUICConnectionStarted.name, () => void (started = true), { once: true });
  let corked: Promise<void> | undefined;
  c.send = (): Promise<void> => {
    if (!started) return flush();
    if (corked !== undefined) return corked;
    corked = new Promise<void>((resolve, reject) => {
      setImmediate(() => {
        corked = undefined;
        flush().then(resolve, (error: unknown) => {
          // Asked for while the connection ran, flushed after it stopped: the
          // library's own callers check `running` first and would not have sent.
          if (error instanceof quicErrors.ErrorQUICConnectionNotRunning) resolve();
          else reject(error);
        });
      });
    });
    // Every caller awaits it; this only keeps a failure nobody awaits from escaping.
    corked.catch(() => {});
    return corked;
  };
}

/** Replacement 2: quiche's timer on one plain setTimeout. */
function replaceTimer(
  c: ConnectionInternals,
  conn: Required<NonNullable<ConnectionInternals['conn']>>,
  onError: (error: unknown) => void,
): void {
  let handle: ReturnType<typeof setTimeout> | undefined;
  /** True while the timer's own handler runs: it re-arms itself at its end. */
  let settling = false;
  const closed = (): void => {
    c.resolveClosedP!();
    if (conn.isTimedOut()) {
      c.dispatchEvent(new quicEvents.EventQUICConnectionError({ detail: new quicErrors.ErrorQUICConnectionIdleTimeout() }));
    }
  };
  const arm = (ms: number): void => {
    if (handle !== undefined) clearTimeout(handle);
    // Plus 1 ms, as the library does, for clock differences with quiche.
    handle = setTimeout(fire, ms + 1);
  };
  const fire = async (): Promise<void> => {
    handle = undefined;
    settling = true;
    try {
      conn.onTimeout();
      if (conn.isClosed()) {
        closed();
        return;
      }
      await c.send!();
    } catch (error) {
      // send() already reported an internal failure as a connection error.
      onError(error);
      return;
    } finally {
      settling = false;
    }
    const next = conn.timeout();
    if (next !== null) arm(next);
  };
  c.setConnTimeoutTimer = (): void => {
    const timeout = conn.timeout();
    if (timeout === null) {
      if (handle !== undefined) clearTimeout(handle);
      handle = undefined;
      if (conn.isClosed()) closed();
      return;
    }
    if (settling) return;
    arm(timeout);
  };
}

/** Replacement 4 for a client: its connection's events are no longer cloned onto it. */
export function untangleClient(client: QUICClient): void {
  const handler = (client as unknown as { handleEventQUICConnection?: (event: Event) => void }).handleEventQUICConnection;
  if (typeof handler === 'function') client.connection.removeEventListener('EventAll', handler);
}

/** Replacement 4 for a server connection: its events are no longer cloned onto the server. */
export function untangleServerConnection(server: QUICServer, quic: QUICConnection): void {
  const handler = (server as unknown as { handleEventQUICConnection?: (event: Event) => void }).handleEventQUICConnection;
  if (typeof handler === 'function') quic.removeEventListener('EventAll', handler);
}

/** Replacement 4 for a stream: its events are no longer cloned onto its connection. */
export function untangleStream(quic: QUICConnection, stream: QUICStream): void {
  const handler = (quic as unknown as ConnectionInternals).handleEventQUICStream;
  if (typeof handler === 'function') stream.removeEventListener('EventAll', handler);
}

/** A read-write lock with what async-init's create-destroy wrapper uses of one. */
class LightRWLock {
  #readers = 0;
  #writer = false;
  readonly #queue: Array<{ write: boolean; go: () => void }> = [];

  isLocked(type?: 'read' | 'write'): boolean {
    if (type === 'write') return this.#writer;
    if (type === 'read') return this.#readers > 0;
    return this.#writer || this.#readers > 0;
  }

  withReadF<T>(...params: unknown[]): Promise<T> {
    return this.#with(false, params[params.length - 1] as () => Promise<T>);
  }

  withWriteF<T>(...params: unknown[]): Promise<T> {
    return this.#with(true, params[params.length - 1] as () => Promise<T>);
  }

  async #with<T>(write: boolean, f: () => Promise<T>): Promise<T> {
    await this.#acquire(write);
    try {
      return await f();
    } finally {
      if (write) this.#writer = false;
      else this.#readers--;
      this.#next();
    }
  }

  #acquire(write: boolean): Promise<void> {
    const free = write ? !this.#writer && this.#readers === 0 : !this.#writer && this.#queue.length === 0;
    if (free && this.#queue.length === 0) {
      if (write) this.#writer = true;
      else this.#readers++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.#queue.push({ write, go: resolve }));
  }

  #next(): void {
    while (this.#queue.length > 0 && !this.#writer) {
      const head = this.#queue[0]!;
      if (head.write) {
        if (this.#readers > 0) return;
        this.#queue.shift();
        this.#writer = true;
        head.go();
        return;
      }
      this.#queue.shift();
      this.#readers++;
      head.go();
    }
  }
}

let initLockKey: symbol | undefined;

/** Replacement 5: a stream's create-destroy lock. Returns false when the shape did not match. */
export function tuneStream(stream: QUICStream): boolean {
  const target = stream as unknown as Record<symbol, unknown>;
  initLockKey ??= Object.getOwnPropertySymbols(stream).find((key) => key.description === 'initLock');
  if (initLockKey === undefined) return false;
  const current = target[initLockKey] as { withWriteF?: unknown; isLocked?: (type?: string) => boolean } | undefined;
  if (typeof current?.withWriteF !== 'function' || typeof current.isLocked !== 'function' || current.isLocked()) return false;
  target[initLockKey] = new LightRWLock();
  return true;
}
