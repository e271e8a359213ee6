/**
 * The QUIC transport: one UDP socket per adapter, shared by its server and
 * all its clients, mutual TLS with pinned Ed25519 identities on every
 * connection. See `connection.ts` for the connection, `wire.ts` for the bytes,
 * `tuning.ts` for what is changed in the library and why.
 *
 * Identity: an outbound dial pins the expected peer id in its TLS verify
 * callback; another key fails the handshake and the dial rejects with kind
 * `identity-mismatch`. An inbound connection's peer id is the key of the
 * client certificate; a certificate that is not a valid self-signed Ed25519
 * one is refused during the handshake (TLS alert bad_certificate), and the
 * gates (`allowInbound` here, and the engine's) may refuse the peer id then
 * too (alert access_denied). The library resolves a dial as soon as *our*
 * side of the handshake is done; if the listener then refuses our
 * certificate, the connection ends with `CloseInfo.code` IdentityMismatch
 * (bad_certificate) or AdmissionDenied (access_denied), while the runtime is
 * still in `handshaking`, waiting for hello-ack. No application byte is read
 * from a peer before its certificate passed (the library holds streams back
 * until the verify callback accepted), and the listener hands a connection
 * over only when the dialler's control stream arrives, which the dialler
 * opens only after its own check passed: a dialler that refused us never
 * shows up as a connection.
 *
 * Admission control (`TransportPolicy.admission`, from the engine) is
 * enforced here, as early as each check can be made. A server connection is
 * registered by the library once the dialler proved its address (stateless
 * retry) and before any TLS work: the rate per remote IP, the inbound limit
 * and the handshaking limit are checked then. A refused connection gets the
 * server's first flight and right after it a transport CONNECTION_CLOSE with
 * CONNECTION_REFUSED and the reason text of its ConnectionErrorCode (QUIC
 * allows no application code before the handshake completes; a peerline
 * dialler maps the text back, see `codeForReason`); it never reaches TLS
 * verification. The gates need the peer id, so they run in the TLS verify
 * callback (an answer that takes time is awaited right after TLS, see
 * `#verifyInbound`). Every inbound connection must be handed over (TLS done
 * and the control stream arrived) within `handshakeTimeoutMs` of its
 * registration, or it is closed with HandshakeTimeout.
 *
 * Failures: the library re-throws what it does not expect from inside its
 * own event handlers (uncaught exceptions) and from the UDP socket's message
 * handler (unhandled rejections). Every library object peerline touches
 * (socket, server, clients, connections from the moment they are registered,
 * streams) gets an `EventError` listener, which replaces the re-throwing
 * default; the message handler and the UDP socket's `error` event are guarded
 * too. What they catch is logged, counted in `stats().libraryErrors`, and ends
 * the connection it came from.
 */
import { createHmac, randomBytes, randomFillSync, timingSafeEqual } from 'node:crypto';
import {
  QUICClient,
  QUICServer,
  QUICSocket,
  errors as quicErrors,
  events as quicEvents,
  type QUICConfig,
  type QUICConnection,
} from '@matrixai/quic';
import {
  TransportError,
  type Adapter,
  type Connection,
  type DialOptions,
  type InboundGate,
  type TransportPolicy,
} from '../adapter.js';
import { RateLimiter } from '../rate-limit.js';
import { ConnectionErrorCode, reasonFor } from '../../machines/codes.js';
import { parseQuicAddress, quicAddress } from './address.js';
import { CryptoError, QUIC_CONNECTION_REFUSED, QuicConnection, refusalCode, remoteAddressOf, type ConnectionHost } from './connection.js';
import { checkIdentity, peerIdFromCertificate, type QuicIdentity } from './identity.js';
import { validateQuicAdapterOptions, validateTransportPolicy } from './options.js';
import { codeToReason, reasonToCode } from './stream.js';
import { tuneConnection, untangleClient, untangleServerConnection } from './tuning.js';

/** What the adapter logs through. Structurally a subset of the engine's logger. */
export interface QuicLogger {
  warn(line: string, error?: unknown): void;
  trace?(line: string): void;
}

export interface QuicAdapterOptions {
  /** This peer's identity (see `generateIdentity`, `loadIdentity`). */
  readonly identity: QuicIdentity;
  /** IP address to bind. @default '127.0.0.1' */
  readonly host?: string;
  /** UDP port to bind; 0 picks a free one. @default 0 */
  readonly port?: number;
  /** @default warnings to stderr */
  readonly logger?: QuicLogger;
  /**
   * Inbound gate, asked during the TLS handshake with the client's peer id
   * and address, before the engine's own `allowInbound`. False (or a throw)
   * refuses the connection in TLS (alert access_denied). A promise is
   * awaited after TLS, nothing being read from the connection meanwhile;
   * false, a rejection, or no answer within the handshake timeout closes it.
   * Either way the dialler's connection ends with the AdmissionDenied code.
   * @default every peer is allowed
   */
  readonly allowInbound?: InboundGate;
  /**
   * How long a stateless-retry token stays good: at least this, less than
   * three times this. A dialler uses its token one round trip after getting
   * it; a handshake recorded and replayed from the same address later than
   * that is dropped before any state is made for it.
   * @default 10_000
   */
  readonly retryTokenMs?: number;
  /** Settings passed to @matrixai/quic as they are (after peerline's own). For experiments. */
  readonly quicConfig?: Partial<QUICConfig>;
  /**
   * Replaces three per-packet internals of @matrixai/quic with cheaper
   * equivalents (see `tuning.ts`); about half the CPU per stream on loopback.
   * @default true
   */
  readonly tuning?: boolean;
}

export interface QuicAdapterStats {
  /** Connections open (both directions), including inbound ones past TLS waiting for their control stream. */
  readonly connections: number;
  /** Dials in progress. */
  readonly dialing: number;
  /** Inbound connections not handed over yet (in TLS, or waiting for the control stream). */
  readonly handshaking: number;
  /** Streams open on all connections. */
  readonly streams: number;
  /** Connections the library still holds, whatever their state (closing and draining ones too). */
  readonly libraryConnections: number;
  /** Inbound connections refused: by admission control before TLS, by a gate or a bad certificate during it. */
  readonly refused: number;
  /** Errors the library threw from its handlers (caught here); should stay 0. */
  readonly libraryErrors: number;
}

/** The engine's defaults, used until `configure()` is called. */
export const DEFAULT_TRANSPORT_POLICY: Readonly<TransportPolicy> = Object.freeze({
  connectTimeoutMs: 10_000,
  handshakeTimeoutMs: 10_000,
  heartbeatIntervalMs: 5_000,
  heartbeatTimeoutMs: 2_000,
  heartbeatMisses: 3,
  maxProtocolLength: 256,
  maxInboundStreams: 100,
});

/** Default `retryTokenMs`. */
export const DEFAULT_RETRY_TOKEN_MS = 10_000;

/** ALPN: a peerline endpoint only completes a handshake with another one. */
export const ALPN = 'peerline/1';

/**
 * QUIC's own liveness settings derived from the engine's heartbeat: the idle
 * timeout is a bit above the time heartbeats need to declare a silent peer
 * dead (so the engine, not QUIC, names the failure), and the keep-alive is
 * well below the idle timeout (so an idle but healthy connection never
 * expires, and NAT bindings stay open).
 */
export function quicTimings(policy: TransportPolicy): { maxIdleTimeout: number; keepAliveIntervalTime: number } {
  validateTransportPolicy(policy);
  const silence = policy.heartbeatIntervalMs * policy.heartbeatMisses + policy.heartbeatTimeoutMs;
  const maxIdleTimeout = Math.ceil(silence + Math.max(1_000, silence / 4));
  const keepAliveIntervalTime = Math.max(25, Math.floor(maxIdleTimeout / 3));
  return { maxIdleTimeout, keepAliveIntervalTime };
}

/** The library's logger interface, as far as it uses it; everything it says is dropped. */
type LibraryLogger = NonNullable<ConstructorParameters<typeof QUICSocket>[0]['logger']>;
function quietLogger(): LibraryLogger {
  const logger = {
    debug: () => {},
    info: () => {},
    warn: () => {},
    error: () => {},
    getChild: () => logger,
  };
  return logger as unknown as LibraryLogger;
}

const stderrLogger: QuicLogger = {
  warn: (line, error) =>
    process.stderr.write(`${line}${error === undefined ? '' : `: ${error instanceof Error ? error.message : String(error)}`}\n`),
};

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The native quiche connection inside a QUICConnection, as far as admission uses it (not in the library's typings). */
interface NativeCloser {
  close(app: boolean, code: number, reason: Uint8Array): void;
  localError(): unknown;
  isClosed(): boolean;
  isDraining(): boolean;
}

/** A library connection as admission control touches it (not in the library's typings). */
interface ServerConnectionInternals {
  readonly type?: string;
  readonly remoteHost?: string;
  conn?: Partial<NativeCloser>;
  config?: Partial<QUICConfig>;
  recv?: (...args: unknown[]) => Promise<void>;
}

/** An inbound library connection between its registration and its handover. */
interface Handshaking {
  readonly timer: ReturnType<typeof setTimeout>;
  /** TLS completed (the library started the connection). */
  tlsDone: boolean;
  /** The gates' answer once asked: a promise while they decide. */
  verdict: boolean | Promise<boolean> | undefined;
}

/** Waits for `promises`, at most `ms`. */
async function settledWithin(promises: Promise<unknown>[], ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.allSettled(promises),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

/** A dial in progress. */
interface PendingDial {
  settled: boolean;
  readonly controller: AbortController;
  fail(error: TransportError): void;
}

export class QuicAdapter implements Adapter {
  readonly localPeerId: string;
  readonly #identity: QuicIdentity;
  readonly #bindHost: string;
  readonly #bindPort: number;
  readonly #logger: QuicLogger;
  readonly #allowInbound: InboundGate | undefined;
  readonly #overrides: Partial<QUICConfig>;
  readonly #tuning: boolean;
  readonly #libraryLogger = quietLogger();
  readonly #socket: QUICSocket;
  /** Keys of the stateless-retry tokens: the current one (since when, last used when) and the one before. */
  readonly #retryKeys: { current: Buffer; previous: Buffer | undefined; since: number; signed: number } = {
    current: randomBytes(32),
    previous: undefined,
    since: Date.now(),
    signed: -Infinity,
  };
  readonly #retryTokenMs: number;
  #policy: TransportPolicy = DEFAULT_TRANSPORT_POLICY;
  #state: 'open' | 'closed' = 'open';
  #binding: Promise<void> | undefined;
  #boundPort: number | undefined;
  #boundHost: string | undefined;
  #listening: Promise<void> | undefined;
  #server: QUICServer | undefined;
  #onConnection: ((connection: Connection) => void) | undefined;
  readonly #connections = new Set<QuicConnection>();
  readonly #guarded = new WeakSet<QUICConnection>();
  readonly #owners = new WeakMap<QUICConnection, QuicConnection>();
  /** Inbound library connections not handed over yet, from their registration (see the top of this file). */
  readonly #handshaking = new Map<QUICConnection, Handshaking>();
  #rate: RateLimiter | undefined;
  #refused = 0;
  readonly #dials = new Set<PendingDial>();
  readonly #attempts = new Set<Promise<unknown>>();
  #closing: Promise<void> | undefined;
  #libraryErrors = 0;
  #nextId = 0;
  readonly #host: ConnectionHost;
  /** True when admission control is applied here (the library had the shape the hooks need). */
  readonly enforcesAdmission: boolean;

  constructor(options: QuicAdapterOptions) {
    if (options === null || typeof options !== 'object') throw new TypeError('createQuicAdapter needs { identity }');
    this.localPeerId = checkIdentity(options.identity);
    this.#identity = options.identity;
    this.#bindHost = options.host ?? '127.0.0.1';
    this.#bindPort = options.port ?? 0;
    if (!Number.isInteger(this.#bindPort) || this.#bindPort < 0 || this.#bindPort > 65535) {
      throw new RangeError(`port must be 0..65535, got ${String(options.port)}`);
    }
    this.#logger = options.logger ?? stderrLogger;
    this.#retryTokenMs = options.retryTokenMs ?? DEFAULT_RETRY_TOKEN_MS;
    if (typeof this.#retryTokenMs !== 'number' || !Number.isFinite(this.#retryTokenMs) || this.#retryTokenMs <= 0) {
      throw new RangeError(`retryTokenMs must be a finite number > 0, got ${String(options.retryTokenMs)}`);
    }
    this.#allowInbound = options.allowInbound;
    this.#overrides = options.quicConfig ?? {};
    this.#tuning = options.tuning !== false;
    this.#socket = new QUICSocket({ logger: this.#libraryLogger });
    this.#socket.addEventListener('EventError', (event: Event) => this.#libraryError('socket', event));
    // The socket's message handler is async and re-throws what it does not
    // expect, which would be an unhandled rejection: wrap it before start()
    // registers it with the UDP socket.
    const guarded = this.#socket as unknown as { handleSocketMessage: (...args: unknown[]) => Promise<void> };
    const original = guarded.handleSocketMessage;
    if (typeof original === 'function') {
      guarded.handleSocketMessage = (...args: unknown[]) =>
        original(...args).catch((error: unknown) => {
          // A datagram still being handled while the socket or its connection
          // stops (our own close): nothing is wrong, there is just no one left.
          if (error instanceof quicErrors.ErrorQUICSocketNotRunning || error instanceof quicErrors.ErrorQUICConnectionNotRunning) return;
          this.libraryError('socket message', error);
        });
    }
    // Every connection the library registers (client or server side, before
    // its handshake) gets its EventError guard at once; a server one goes
    // through admission control (see the top of this file).
    const connections = (this.#socket as unknown as {
      connectionMap?: { set?: (...args: unknown[]) => unknown; delete?: (...args: unknown[]) => unknown; get?: (id: unknown) => unknown };
    }).connectionMap;
    const set = connections?.set;
    const remove = connections?.delete;
    const get = connections?.get;
    let hooked = false;
    if (connections !== undefined && typeof set === 'function') {
      connections.set = (...args: unknown[]) => {
        const quic = args[1] as QUICConnection | undefined;
        const fresh = quic !== undefined && !this.#guarded.has(quic);
        if (fresh) {
          this.#guarded.add(quic);
          if (this.#tuning) tuneConnection(quic, (error) => this.report('connection timer', error));
          quic.addEventListener('EventError', (event: Event) => {
            const error = (event as unknown as { detail: unknown }).detail;
            this.libraryError('connection', error);
            this.#owners.get(quic)?.libraryFailure(error);
          });
        }
        const result = set.apply(connections, args);
        if (fresh && (quic as unknown as ServerConnectionInternals).type === 'server') {
          try {
            this.#register(quic);
          } catch (error) {
            this.report('inbound admission', error);
          }
        }
        return result;
      };
      if (typeof remove === 'function' && typeof get === 'function') {
        hooked = true;
        connections.delete = (...args: unknown[]) => {
          const quic = get.call(connections, args[0]) as QUICConnection | undefined;
          if (quic !== undefined) this.#dropHandshaking(quic);
          return remove.apply(connections, args);
        };
      }
    }
    this.enforcesAdmission = hooked;
    const self = this;
    this.#host = {
      localPeerId: this.localPeerId,
      get maxProtocolLength() {
        return self.#policy.maxProtocolLength;
      },
      get headerTimeoutMs() {
        return self.#policy.handshakeTimeoutMs;
      },
      tuning: this.#tuning,
      nextId: () => (this.#nextId++).toString(36),
      connectionEnded: (connection) => {
        this.#connections.delete(connection);
        this.#dropHandshaking(connection.quic);
      },
      report: (what, error) => this.report(what, error),
      libraryError: (what, error) => this.libraryError(what, error),
    };
  }

  /** The bound UDP port (after `start()`, `listen()` or a dial). */
  get port(): number {
    if (this.#boundPort === undefined) throw new Error('the adapter is not bound yet: call start(), listen() or dial() first');
    return this.#boundPort;
  }

  /** The bound IP address. */
  get host(): string {
    if (this.#boundHost === undefined) throw new Error('the adapter is not bound yet: call start(), listen() or dial() first');
    return this.#boundHost;
  }

  /** This adapter's address, `quic://HOST:PORT` (after `start()`). */
  get address(): string {
    return quicAddress(this.port, this.host);
  }

  get policy(): Readonly<TransportPolicy> {
    return this.#policy;
  }

  stats(): QuicAdapterStats {
    let awaitingControl = 0;
    for (const quic of this.#handshaking.keys()) if (this.#owners.has(quic)) awaitingControl++;
    let streams = 0;
    for (const connection of this.#connections) streams += connection.streamCount;
    const map = (this.#socket as unknown as { connectionMap?: { size?: number } }).connectionMap;
    return {
      connections: this.#connections.size + awaitingControl,
      dialing: this.#dials.size,
      handshaking: this.#handshaking.size,
      streams,
      libraryConnections: typeof map?.size === 'number' ? map.size : 0,
      refused: this.#refused,
      libraryErrors: this.#libraryErrors,
    };
  }

  configure(policy: TransportPolicy): void {
    this.#policy = { ...DEFAULT_TRANSPORT_POLICY, ...policy };
    const admission = this.#policy.admission;
    this.#rate = admission === undefined ? undefined : new RateLimiter(admission.inboundRateLimit, Date.now);
    this.#server?.updateConfig(this.#config('server'));
  }

  /** Binds the UDP socket (idempotent). Resolves with the port. */
  async start(): Promise<number> {
    if (this.#state === 'closed') throw new TransportError('closed', `adapter ${this.localPeerId} is closed`);
    this.#binding ??= (async () => {
      await this.#socket.start({ host: this.#bindHost, port: this.#bindPort });
      this.#boundPort = this.#socket.port;
      this.#boundHost = this.#socket.host;
      // The UDP socket's 'error' event has no listener in the library: an
      // unlistened 'error' would throw.
      const udp = (this.#socket as unknown as { socket?: { on?(event: string, fn: (error: unknown) => void): void } }).socket;
      udp?.on?.('error', (error) => this.report('udp socket', error));
    })();
    await this.#binding;
    return this.port;
  }

  async listen(onConnection: (connection: Connection) => void): Promise<void> {
    if (this.#state === 'closed') throw new TransportError('closed', `adapter ${this.localPeerId} is closed`);
    this.#onConnection = onConnection;
    this.#listening ??= (async () => {
      await this.start();
      const server = new QUICServer({
        socket: this.#socket,
        // The library signs its retry tokens (and derives connection ids)
        // with these. Its tokens carry no time: the key changes every
        // `retryTokenMs` and the one before still verifies for a while, so a
        // token is good for one to three periods, and a recorded handshake
        // cannot be replayed from the same address for ever after.
        crypto: {
          key: toArrayBuffer(this.#retryKeys.current),
          ops: {
            sign: async (_key: ArrayBuffer, data: ArrayBuffer) => toArrayBuffer(this.#hmac(this.#retryKey(), data)),
            verify: async (_key: ArrayBuffer, data: ArrayBuffer, signature: ArrayBuffer) => {
              const given = Buffer.from(signature);
              const { current, previous } = this.#rotateRetryKey();
              return [current, previous].some((key) => {
                if (key === undefined) return false;
                const expected = this.#hmac(key, data);
                return given.length === expected.length && timingSafeEqual(given, expected);
              });
            },
          },
        },
        config: this.#config('server'),
        reasonToCode,
        codeToReason,
        // Bounds the handshake of an accepted connection that goes silent.
        minIdleTimeout: this.#policy.connectTimeoutMs,
        logger: this.#libraryLogger,
      });
      server.addEventListener('EventError', (event: Event) => this.#libraryError('server', event));
      server.addEventListener(quicEvents.EventQUICServerConnection.name, this.#onServerConnection);
      await server.start();
      this.#server = server;
      if (this.#state === 'closed') await server.stop({ force: true }).catch(() => {});
    })();
    await this.#listening;
  }

  dial(peerId: string, address: string, options: DialOptions): Promise<Connection> {
    if (this.#state === 'closed') return Promise.reject(new TransportError('closed', `adapter ${this.localPeerId} is closed`));
    const target = parseQuicAddress(address);
    if (target === undefined) return Promise.reject(new TransportError('unreachable', `not a QUIC address: ${String(address)}`));
    const signal = options?.signal;
    if (signal?.aborted === true) return Promise.reject(new TransportError('aborted', 'dial aborted'));
    return new Promise<Connection>((resolve, reject) => {
      const controller = new AbortController();
      const onAbort = (): void => dial.fail(new TransportError('aborted', 'dial aborted'));
      const dial: PendingDial = {
        settled: false,
        controller,
        fail: (error) => {
          if (!finish()) return;
          reject(error);
        },
      };
      const finish = (): boolean => {
        if (dial.settled) return false;
        dial.settled = true;
        signal?.removeEventListener('abort', onAbort);
        this.#dials.delete(dial);
        // Stops the library's attempt; a connection it makes anyway is closed below.
        controller.abort(new Error('dial settled'));
        return true;
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#dials.add(dial);

      const verifyCallback = async (certs: Uint8Array[]): Promise<number | undefined> => {
        try {
          const found = peerIdFromCertificate(certs[0] ?? new Uint8Array());
          if (found === peerId) return undefined;
          dial.fail(new TransportError('identity-mismatch', `expected peer ${peerId} at ${address}, found peer ${found}`));
        } catch (error) {
          dial.fail(new TransportError('identity-mismatch', `the certificate at ${address} is not valid: ${describe(error)}`));
        }
        return CryptoError.BadCertificate;
      };

      const attempt = (async () => {
        await this.start();
        if (dial.settled) return undefined;
        return QUICClient.createQUICClient(
          {
            host: target.host,
            port: target.port,
            socket: this.#socket,
            crypto: { ops: { randomBytes: async (data: ArrayBuffer) => void randomFillSync(new Uint8Array(data)) } },
            config: { ...this.#config('client'), verifyCallback: verifyCallback as QUICConfig['verifyCallback'] },
            reasonToCode,
            codeToReason,
            logger: this.#libraryLogger,
          },
          { timer: this.#policy.connectTimeoutMs, signal: controller.signal },
        );
      })();
      const tracked = attempt.then(
        (client) => {
          if (client === undefined) return;
          client.addEventListener('EventError', (event: Event) => {
            const error = (event as unknown as { detail: unknown }).detail;
            this.libraryError('client', error);
            this.#owners.get(client.connection)?.libraryFailure(error);
          });
          if (dial.settled || this.#state === 'closed') {
            client
              .destroy({ isApp: true, errorCode: ConnectionErrorCode.Abandoned, reason: Buffer.from(reasonFor(ConnectionErrorCode.Abandoned)), force: true })
              .catch((error: unknown) => this.report('abandoned client', error));
            return;
          }
          const connection = new QuicConnection({
            host: this.#host,
            quic: client.connection,
            client,
            direction: 'outbound',
            remotePeerId: peerId,
          });
          this.#owners.set(client.connection, connection);
          if (this.#tuning) untangleClient(client);
          if (connection.isClosed) {
            dial.fail(connection.connectionError() ?? new TransportError('closed', 'the connection closed during the dial'));
            return;
          }
          this.#connections.add(connection);
          if (finish()) resolve(connection);
          else connection.close(ConnectionErrorCode.Abandoned, reasonFor(ConnectionErrorCode.Abandoned));
        },
        (error: unknown) => dial.fail(this.#dialError(error, address)),
      );
      this.#attempts.add(tracked);
      void tracked.finally(() => this.#attempts.delete(tracked));
    });
  }

  /**
   * Stops listening, fails pending dials (kind `closed`), closes every
   * connection with ConnectionErrorCode.Shutdown and releases the socket.
   * Idempotent; never rejects.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#state = 'closed';
    for (const dial of [...this.#dials]) dial.fail(new TransportError('closed', 'adapter closed'));
    const stopped: Promise<void>[] = [];
    const handedOver = [...this.#connections];
    for (const quic of [...this.#handshaking.keys()]) {
      // Past TLS: closed with Shutdown like the others. Still in TLS: the server's stop below ends it.
      const owner = this.#owners.get(quic);
      if (owner !== undefined) handedOver.push(owner);
      this.#dropHandshaking(quic);
    }
    for (const connection of handedOver) {
      connection.close(ConnectionErrorCode.Shutdown, reasonFor(ConnectionErrorCode.Shutdown));
      stopped.push(connection.whenStopped());
    }
    await settledWithin([...stopped, ...this.#attempts, this.#listening ?? Promise.resolve()], 5_000);
    if (this.#server !== undefined) {
      await settledWithin([this.#server.stop({ force: true }).catch((error: unknown) => this.report('server stop', error))], 5_000);
    }
    if (this.#binding !== undefined) {
      await this.#binding.catch(() => {});
      await this.#socket.stop({ force: true }).catch((error: unknown) => this.report('socket stop', error));
    }
  }

  #hmac(key: Buffer, data: ArrayBuffer): Buffer {
    return createHmac('sha256', key).update(Buffer.from(data)).digest();
  }

  /**
   * Changes the retry key once it has been current for `retryTokenMs`,
   * lazily (no timer). The old key keeps verifying for one more period only
   * if it signed something in the last period: a token is good for at least
   * `retryTokenMs` and less than three times that.
   */
  #rotateRetryKey(): { current: Buffer; previous: Buffer | undefined } {
    const keys = this.#retryKeys;
    const now = Date.now();
    if (now - keys.since >= this.#retryTokenMs) {
      keys.previous = now - keys.signed < this.#retryTokenMs ? keys.current : undefined;
      keys.current = randomBytes(32);
      keys.since = now;
      keys.signed = -Infinity;
    }
    return keys;
  }

  #retryKey(): Buffer {
    const keys = this.#rotateRetryKey();
    this.#retryKeys.signed = Date.now();
    return keys.current;
  }

  /** Logs a failure that peerline caught; never throws. */
  report(what: string, error: unknown): void {
    try {
      this.#logger.warn(`peerline quic ${this.localPeerId.slice(0, 8)}: ${what}`, error);
    } catch {
      // A logger that throws is not our failure to report.
    }
  }

  #libraryError(where: string, event: Event): void {
    this.libraryError(where, (event as unknown as { detail: unknown }).detail);
  }

  /** Counts and reports an error the library threw from one of its handlers (caught here). */
  libraryError(where: string, error: unknown): void {
    this.#libraryErrors += 1;
    this.report(`${where}: library error`, error);
  }

  readonly #onServerConnection = (event: Event): void => {
    const quic = (event as unknown as { detail: QUICConnection }).detail;
    if (this.#tuning && this.#server !== undefined) untangleServerConnection(this.#server, quic);
    let peerId: string;
    try {
      peerId = peerIdFromCertificate(quic.getRemoteCertsChain()[0] ?? new Uint8Array());
    } catch (error) {
      // The verify callback already accepted it; this cannot happen unless the library changed.
      this.report('inbound certificate', error);
      this.#dropHandshaking(quic);
      this.#stopBare(quic, ConnectionErrorCode.IdentityMismatch);
      return;
    }
    if (this.#state === 'closed' || this.#onConnection === undefined) {
      this.#dropHandshaking(quic);
      this.#stopBare(quic, ConnectionErrorCode.Shutdown);
      return;
    }
    // Not registered through the connection map (the hook did not match the
    // library): the handshake bound starts now, and the gates are asked now.
    let pending = this.#handshaking.get(quic);
    if (pending === undefined) {
      pending = this.#trackHandshake(quic);
      pending.verdict = this.#gate(peerId, remoteAddressOf(quic));
    }
    pending.tlsDone = true;
    const verdict = pending.verdict;
    if (typeof verdict !== 'object') {
      if (verdict === false) return this.#deny(quic);
      this.#takeOver(quic, peerId);
      return;
    }
    // A gate is still deciding: the connection waits, verified, with nothing
    // read from it (the library buffers what arrives, within QUIC's limits).
    const record = pending;
    void verdict.then((allowed) => {
      if (this.#handshaking.get(quic) !== record) return; // Expired or closed meanwhile.
      record.verdict = allowed;
      if (!allowed) this.#deny(quic);
      else if (this.#state === 'closed' || this.#onConnection === undefined) {
        this.#dropHandshaking(quic);
        this.#stopBare(quic, ConnectionErrorCode.Shutdown);
      } else this.#takeOver(quic, peerId);
    });
  };

  /** Wraps a verified, admitted library connection; it is handed over when the dialler's control stream arrives. */
  #takeOver(quic: QUICConnection, peerId: string): void {
    // Handed over only once the dialler's control stream arrives: the dialler
    // opens it after *its* certificate check passed, so a dialler that refused
    // us never shows up as a connection here.
    const connection = new QuicConnection({
      host: this.#host,
      quic,
      direction: 'inbound',
      remotePeerId: peerId,
      onReady: (ready) => {
        this.#dropHandshaking(quic);
        const onConnection = this.#onConnection;
        if (this.#state === 'closed' || onConnection === undefined) {
          ready.close(ConnectionErrorCode.Shutdown, reasonFor(ConnectionErrorCode.Shutdown));
          return;
        }
        this.#connections.add(ready);
        try {
          onConnection(ready);
        } catch (error) {
          this.report('onConnection handler', error);
        }
      },
    });
    this.#owners.set(quic, connection);
    if (connection.isClosed) this.#dropHandshaking(quic);
  }

  /** A gate said no after TLS (it answered asynchronously): closed with AdmissionDenied. */
  #deny(quic: QUICConnection): void {
    this.#dropHandshaking(quic);
    this.#countRefusal(ConnectionErrorCode.AdmissionDenied, remoteAddressOf(quic));
    this.#stopBare(quic, ConnectionErrorCode.AdmissionDenied);
  }

  // ------------------------------------------------------ admission control

  /** A server connection the library just registered, before its TLS handshake. */
  #register(quic: QUICConnection): void {
    const internals = quic as unknown as ServerConnectionInternals;
    const host = internals.remoteHost ?? '';
    const admission = this.#policy.admission;
    let code: ConnectionErrorCode | undefined;
    if (this.#state === 'closed') {
      code = ConnectionErrorCode.Shutdown;
    } else if (admission !== undefined) {
      const held = admission.held();
      if (this.#rate !== undefined && !this.#rate.take(host)) code = ConnectionErrorCode.RateLimited;
      else if (held.inbound + this.#handshaking.size >= admission.maxInboundConnections) code = ConnectionErrorCode.ConnectionLimit;
      else if (held.handshaking + this.#handshaking.size >= admission.maxHandshakingConnections) code = ConnectionErrorCode.HandshakeLimit;
    }
    if (code !== undefined) {
      this.#refuseBeforeTls(quic, code);
      return;
    }
    // This connection's own TLS verification: it knows the remote address.
    if (internals.config !== undefined) {
      internals.config = {
        ...internals.config,
        verifyCallback: ((certs: Uint8Array[]) => this.#verifyInbound(quic, certs)) as QUICConfig['verifyCallback'],
      };
    }
    this.#trackHandshake(quic);
  }

  #trackHandshake(quic: QUICConnection): Handshaking {
    const record: Handshaking = {
      timer: setTimeout(() => this.#handshakeExpired(quic), this.#policy.handshakeTimeoutMs),
      tlsDone: false,
      verdict: undefined,
    };
    this.#handshaking.set(quic, record);
    quic.addEventListener(quicEvents.EventQUICConnectionError.name, () => this.#dropHandshaking(quic), { once: true });
    return record;
  }

  /** Not handed over within the handshake timeout of its registration. */
  #handshakeExpired(quic: QUICConnection): void {
    const record = this.#handshaking.get(quic);
    if (record === undefined) return;
    // A gate that has not answered by now denies.
    if (typeof record.verdict === 'object') {
      this.report('inbound gate: no answer within the handshake timeout', undefined);
      this.#deny(quic);
      return;
    }
    this.#dropHandshaking(quic);
    const owner = this.#owners.get(quic);
    // Past TLS an application code can go; before it, only the transport close.
    if (owner !== undefined) owner.close(ConnectionErrorCode.HandshakeTimeout, reasonFor(ConnectionErrorCode.HandshakeTimeout));
    else if (record.tlsDone) this.#stopBare(quic, ConnectionErrorCode.HandshakeTimeout);
    else this.#closeBeforeTls(quic, ConnectionErrorCode.HandshakeTimeout);
  }

  #dropHandshaking(quic: QUICConnection): boolean {
    const pending = this.#handshaking.get(quic);
    if (pending === undefined) return false;
    clearTimeout(pending.timer);
    this.#handshaking.delete(quic);
    return true;
  }

  /**
   * Refuses a connection at its registration: it gets the server's first
   * flight (so that the dialler can read what follows) and then the close.
   */
  #refuseBeforeTls(quic: QUICConnection, code: ConnectionErrorCode): void {
    this.#countRefusal(code, remoteAddressOf(quic));
    const internals = quic as unknown as ServerConnectionInternals;
    const recv = internals.recv;
    if (typeof recv !== 'function') {
      this.#closeBeforeTls(quic, code);
      return;
    }
    internals.recv = async (...args: unknown[]) => {
      internals.recv = recv;
      try {
        await recv.apply(quic, args);
      } finally {
        this.#closeBeforeTls(quic, code);
      }
    };
  }

  /**
   * Closes a library connection whose handshake has not completed with the
   * transport error CONNECTION_REFUSED and the reason text of `code`, the way
   * the library closes one itself (the error event makes it send the close
   * and end its start).
   */
  #closeBeforeTls(quic: QUICConnection, code: ConnectionErrorCode): void {
    const native = (quic as unknown as ServerConnectionInternals).conn;
    try {
      if (typeof native?.close !== 'function' || native.isClosed?.() !== false || native.isDraining?.() !== false) return;
      native.close(false, QUIC_CONNECTION_REFUSED, Buffer.from(reasonFor(code)));
      const data = native.localError?.();
      quic.dispatchEvent(
        new quicEvents.EventQUICConnectionError({
          detail: new quicErrors.ErrorQUICConnectionLocal(`refused: ${reasonFor(code)}`, { data: data as never }),
        }),
      );
    } catch (error) {
      this.report('refusing a connection', error);
    }
  }

  #countRefusal(code: ConnectionErrorCode, remoteAddress: string | undefined): void {
    this.#refused += 1;
    try {
      this.#policy.admission?.refused(code, remoteAddress);
    } catch (error) {
      this.report('admission refused callback', error);
    }
  }

  /**
   * TLS verification of one inbound connection: the certificate, then the
   * gates. A gate that answers at once refuses here (TLS alert
   * access_denied). One that answers later cannot be waited for here: the
   * library drops every stream that arrives while the connection is not
   * started yet, and a verify callback that waits keeps it from starting
   * (the dialler's control stream would be lost). Its answer is awaited
   * after TLS instead, before the connection is taken over.
   */
  async #verifyInbound(quic: QUICConnection, certs: Uint8Array[]): Promise<number | undefined> {
    let peerId: string;
    try {
      peerId = peerIdFromCertificate(certs[0] ?? new Uint8Array());
    } catch (error) {
      this.report('inbound certificate refused', error);
      this.#countRefusal(ConnectionErrorCode.IdentityMismatch, remoteAddressOf(quic));
      return CryptoError.BadCertificate;
    }
    if (this.#state === 'closed') return CryptoError.UserCanceled;
    const record = this.#handshaking.get(quic);
    // Verified once already (the library may ask again while an answer is pending).
    if (record?.verdict !== undefined) return undefined;
    const verdict = this.#gate(peerId, remoteAddressOf(quic));
    if (verdict === false) {
      this.#countRefusal(ConnectionErrorCode.AdmissionDenied, remoteAddressOf(quic));
      return CryptoError.AccessDenied;
    }
    if (record !== undefined) record.verdict = verdict;
    return undefined;
  }

  /**
   * Asks the gates (this adapter's `allowInbound`, then the engine's): true
   * or false when they answer at once, else a promise of the answer. A gate
   * that throws or rejects says no.
   */
  #gate(peerId: string, address: string | undefined): boolean | Promise<boolean> {
    const gates = [this.#allowInbound, this.#policy.admission?.allowInbound].filter((gate): gate is InboundGate => gate !== undefined);
    const ask = (index: number): boolean | Promise<boolean> => {
      for (let i = index; i < gates.length; i++) {
        let answer: boolean | Promise<boolean>;
        try {
          answer = gates[i]!(peerId, address);
        } catch (error) {
          this.report(`inbound gate threw for peer ${peerId}`, error);
          return false;
        }
        if (typeof (answer as Promise<boolean> | undefined)?.then === 'function') {
          return Promise.resolve(answer).then(
            (allowed) => (allowed === true ? ask(i + 1) : false),
            (error: unknown) => {
              this.report(`inbound gate rejected for peer ${peerId}`, error);
              return false;
            },
          );
        }
        if (answer !== true) return false;
      }
      return true;
    };
    return ask(0);
  }

  /** Stops a library connection that never became a peerline connection. */
  #stopBare(quic: QUICConnection, code: ConnectionErrorCode): void {
    void quic.stop({ isApp: true, errorCode: code, reason: Buffer.from(reasonFor(code)), force: true }).catch(() => {});
  }

  #config(side: 'client' | 'server'): Partial<QUICConfig> & { key: string; cert: string } {
    const timings = quicTimings(this.#policy);
    const config: Partial<QUICConfig> & { key: string; cert: string } = {
      verifyPeer: true,
      applicationProtos: [ALPN],
      maxIdleTimeout: timings.maxIdleTimeout,
      keepAliveIntervalTime: timings.keepAliveIntervalTime,
      // The remote may open this many streams to us: the engine's inbound
      // limit plus the control stream. No unidirectional streams are used.
      initialMaxStreamsBidi: this.#policy.maxInboundStreams + 1,
      initialMaxStreamsUni: 0,
      ...this.#overrides,
      key: this.#identity.privateKeyPem,
      cert: this.#identity.certificatePem,
    };
    if (side === 'server') {
      // Each registered connection gets its own (see `#register`); this one
      // only serves if the library's shape changed and the hook missed it
      // (the gates are then asked once TLS is done).
      config.verifyCallback = (async (certs: Uint8Array[]) => {
        try {
          peerIdFromCertificate(certs[0] ?? new Uint8Array());
          return this.#state === 'closed' ? CryptoError.UserCanceled : undefined;
        } catch (error) {
          this.report('inbound certificate refused', error);
          return CryptoError.BadCertificate;
        }
      }) as QUICConfig['verifyCallback'];
    }
    return config;
  }

  #dialError(error: unknown, address: string): TransportError {
    if (error instanceof TransportError) return error;
    const refusal = refusalCode(error);
    if (refusal !== undefined) {
      return new TransportError('refused', `the peer at ${address} refused the connection: ${reasonFor(refusal)}`, refusal);
    }
    if (error instanceof quicErrors.ErrorQUICConnectionPeerTLS) {
      return new TransportError('identity-mismatch', `the peer at ${address} refused our certificate`, ConnectionErrorCode.IdentityMismatch);
    }
    if (
      error instanceof quicErrors.ErrorQUICClientCreateTimeout ||
      error instanceof quicErrors.ErrorQUICConnectionStartTimeout ||
      error instanceof quicErrors.ErrorQUICConnectionIdleTimeout
    ) {
      return new TransportError('aborted', `no QUIC handshake with ${address} within ${this.#policy.connectTimeoutMs} ms`);
    }
    if (error instanceof quicErrors.ErrorQUICConnectionPeer) {
      return new TransportError('refused', `the peer at ${address} closed the handshake: ${describe(error)}`);
    }
    return new TransportError('unreachable', `cannot reach ${address}: ${describe(error)}`);
  }
}

/** Creates a QUIC adapter: `createQuicAdapter({ identity, host?, port?, logger?, allowInbound? })`. */
export function createQuicAdapter(options: QuicAdapterOptions): QuicAdapter {
  validateQuicAdapterOptions(options);
  return new QuicAdapter(options);
}
