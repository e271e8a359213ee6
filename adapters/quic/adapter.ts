/**
 * The QUIC transport: one UDP socket per adapter, shared by its server and
 * all its clients, mutual TLS with pinned Ed25519 identities on every
 * connection. See `connection.ts` for the connection, `wire.ts` for the bytes,
 * `tuning.ts` for what is changed in the library and why.
 *
 * Identity: an outbound dial pins the expected peer id in its TLS verify
 * callback; another key fails the handshake and the dial rejects with kind
 * `identity-mismatch`. An inbound connection's peer id is the key of the
 * client certificate, and `allowInbound` may refuse it during the handshake.
 * The library resolves a dial as soon as *our* side of the handshake is done;
 * if the listener then refuses our certificate, the connection ends with
 * `CloseInfo.code = ConnectionErrorCode.IdentityMismatch` (the runtime is
 * still in `handshaking`, waiting for hello-ack, and ends with
 * PEER_IDENTITY_MISMATCH). No application byte is read from a peer before its
 * certificate passed (the library holds streams back until the verify
 * callback accepted), and the listener hands a connection over only when the
 * dialler's control stream arrives, which the dialler opens only after its
 * own check passed: a dialler that refused us never shows up as a connection.
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
  type TransportPolicy,
} from '../adapter.js';
import { ConnectionErrorCode, reasonFor } from '../../machines/codes.js';
import { parseQuicAddress, quicAddress } from './address.js';
import { QuicConnection, type ConnectionHost } from './connection.js';
import { checkIdentity, peerIdFromCertificate, type QuicIdentity } from './identity.js';
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
   * Inbound gate, asked during the TLS handshake with the client's peer id.
   * Returning false refuses the connection (TLS alert access_denied); the
   * dialler's connection ends with the IdentityMismatch code.
   * @default every peer is allowed
   */
  readonly allowInbound?: (peerId: string) => boolean;
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
  /** Connections open (both directions). */
  readonly connections: number;
  /** Dials in progress. */
  readonly dialing: number;
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

/** TLS alert codes as QUIC crypto errors (0x100 + alert). */
const CryptoError = { BadCertificate: 0x100 + 42, AccessDenied: 0x100 + 49, UserCanceled: 0x100 + 90 } as const;

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
  readonly #allowInbound: ((peerId: string) => boolean) | undefined;
  readonly #overrides: Partial<QUICConfig>;
  readonly #tuning: boolean;
  readonly #libraryLogger = quietLogger();
  readonly #socket: QUICSocket;
  readonly #retryKey = randomBytes(32);
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
  /** Inbound connections whose control stream has not arrived yet. */
  readonly #pendingInbound = new Map<QuicConnection, ReturnType<typeof setTimeout>>();
  readonly #dials = new Set<PendingDial>();
  readonly #attempts = new Set<Promise<unknown>>();
  #closing: Promise<void> | undefined;
  #libraryErrors = 0;
  #nextId = 0;
  readonly #host: ConnectionHost;

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
    // its handshake) gets its EventError guard at once.
    const connections = (this.#socket as unknown as { connectionMap?: { set?: (...args: unknown[]) => unknown } }).connectionMap;
    const set = connections?.set;
    if (connections !== undefined && typeof set === 'function') {
      connections.set = (...args: unknown[]) => {
        const quic = args[1] as QUICConnection | undefined;
        if (quic !== undefined && !this.#guarded.has(quic)) {
          this.#guarded.add(quic);
          if (this.#tuning) tuneConnection(quic, (error) => this.report('connection timer', error));
          quic.addEventListener('EventError', (event: Event) => {
            const error = (event as unknown as { detail: unknown }).detail;
            this.libraryError('connection', error);
            this.#owners.get(quic)?.libraryFailure(error);
          });
        }
        return set.apply(connections, args);
      };
    }
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
        this.#dropPending(connection);
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
    return {
      connections: this.#connections.size + this.#pendingInbound.size,
      dialing: this.#dials.size,
      libraryErrors: this.#libraryErrors,
    };
  }

  configure(policy: TransportPolicy): void {
    this.#policy = { ...DEFAULT_TRANSPORT_POLICY, ...policy };
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
        crypto: {
          key: toArrayBuffer(this.#retryKey),
          ops: {
            sign: async (key: ArrayBuffer, data: ArrayBuffer) =>
              toArrayBuffer(createHmac('sha256', Buffer.from(key)).update(Buffer.from(data)).digest()),
            verify: async (key: ArrayBuffer, data: ArrayBuffer, signature: ArrayBuffer) => {
              const expected = createHmac('sha256', Buffer.from(key)).update(Buffer.from(data)).digest();
              const given = Buffer.from(signature);
              return given.length === expected.length && timingSafeEqual(given, expected);
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
    for (const connection of [...this.#connections, ...this.#pendingInbound.keys()]) {
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
      this.#stopBare(quic, ConnectionErrorCode.IdentityMismatch);
      return;
    }
    if (this.#state === 'closed' || this.#onConnection === undefined) {
      this.#stopBare(quic, ConnectionErrorCode.Shutdown);
      return;
    }
    // Handed over only once the dialler's control stream arrives: the dialler
    // opens it after *its* certificate check passed, so a dialler that refused
    // us never shows up as a connection here.
    const connection = new QuicConnection({
      host: this.#host,
      quic,
      direction: 'inbound',
      remotePeerId: peerId,
      onReady: (ready) => {
        this.#dropPending(ready);
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
    if (connection.isClosed || this.#connections.has(connection)) return;
    this.#pendingInbound.set(
      connection,
      setTimeout(() => {
        if (this.#dropPending(connection)) {
          connection.close(ConnectionErrorCode.HandshakeTimeout, reasonFor(ConnectionErrorCode.HandshakeTimeout));
        }
      }, this.#policy.handshakeTimeoutMs),
    );
  };

  #dropPending(connection: QuicConnection): boolean {
    const timer = this.#pendingInbound.get(connection);
    if (timer === undefined) return false;
    clearTimeout(timer);
    this.#pendingInbound.delete(connection);
    return true;
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
      config.verifyCallback = (async (certs: Uint8Array[]) => {
        try {
          const peerId = peerIdFromCertificate(certs[0] ?? new Uint8Array());
          if (this.#state === 'closed') return CryptoError.UserCanceled;
          if (this.#allowInbound !== undefined && this.#allowInbound(peerId) !== true) return CryptoError.AccessDenied;
          return undefined;
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
  return new QuicAdapter(options);
}
