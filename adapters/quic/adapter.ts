/**
 * The QUIC transport: one UDP socket per adapter, shared by its server and
 * all its clients, mutual TLS with pinned Ed25519 identities on every
 * connection. This file is the adapter's lifecycle (start, listen, dial,
 * close, stats); `connection.ts` is a connection's, `admission.ts` admission
 * control, `retry-tokens.ts` the stateless-retry keys, `settings.ts` the QUIC
 * settings, `wire.ts` the bytes, and `seam/` everything that reaches into
 * @matrixai/quic's internals (checked by a startup probe, reported in
 * `stats().seam`).
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
 * still in `handshaking`. No application byte is read from a peer before its
 * certificate passed (the library holds streams back until the verify
 * callback accepted), and the listener hands a connection over only when the
 * dialler's control stream arrives, which the dialler opens only after its
 * own check passed: a dialler that refused us never shows up as a connection.
 *
 * Failures: the library re-throws what it does not expect from inside its
 * own event handlers (uncaught exceptions) and from the UDP socket's message
 * handler (unhandled rejections). Every library object peerline touches
 * (socket, server, clients, connections from the moment they are registered,
 * streams on the library's path) gets an `EventError` listener, which replaces
 * the re-throwing default; the message handler and the UDP socket's `error`
 * event are guarded too (`seam/socket.ts`). What they catch is logged,
 * counted in `stats().libraryErrors`, and ends the connection it came from.
 */
import { randomFillSync } from 'node:crypto';
import { QUICClient, QUICServer, QUICSocket, errors as quicErrors, events as quicEvents, type QUICConfig, type QUICConnection } from '@matrixai/quic';
import { TransportError, type Adapter, type Connection, type DialOptions, type InboundGate, type TransportPolicy } from '../../protocol/adapter.js';
import { ConnectionErrorCode, reasonFor } from '../../protocol/codes.js';
import { parseQuicAddress, quicAddress } from './address.js';
import { InboundAdmission } from './admission.js';
import { CryptoError, describe, refusalCode } from './close-info.js';
import { QuicConnection, type ConnectionHost } from './connection.js';
import { checkIdentity, peerIdFromCertificate, type QuicIdentity } from './identity.js';
import { validateQuicAdapterOptions } from './options.js';
import { DEFAULT_RETRY_TOKEN_MS, RetryTokens } from './retry-tokens.js';
import {
  SocketPath,
  detailOf,
  isServerConnection,
  libraryVerify,
  libraryPath,
  nativePathFor,
  quietLogger,
  reasonToCode,
  remoteStreamError,
  seamProbe,
  type NativePath,
  type SeamProbe,
  type SeamState,
} from './seam/index.js';
import { DEFAULT_TRANSPORT_POLICY, quicConfig } from './settings.js';

export { ALPN, DEFAULT_TRANSPORT_POLICY, quicTimings } from './settings.js';
export { DEFAULT_RETRY_TOKEN_MS } from './retry-tokens.js';

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
   * The native path (`seam/`): streams and packets move on quiche directly
   * once a connection is set up, when the startup probe passed. False: the
   * library's own path, as it comes (slower; for comparison and as the
   * fallback the probe chooses when the library's internals differ).
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
  /** The path connections take and the startup probe's result. */
  readonly seam: SeamState;
}

const stderrLogger: QuicLogger = {
  warn: (line, error) => process.stderr.write(`${line}${error === undefined ? '' : `: ${describe(error)}`}\n`),
};

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
  fail(error: TransportError): void;
}

export class QuicAdapter implements Adapter {
  readonly localPeerId: string;
  readonly #identity: QuicIdentity;
  readonly #bindHost: string;
  readonly #bindPort: number;
  readonly #logger: QuicLogger;
  readonly #overrides: Partial<QUICConfig>;
  readonly #libraryLogger = quietLogger();
  readonly #socket: QUICSocket;
  readonly #socketPath: SocketPath;
  readonly #retryTokens: RetryTokens;
  readonly #admission: InboundAdmission;
  readonly #probe: SeamProbe | undefined;
  readonly #native: boolean;
  #policy: TransportPolicy = DEFAULT_TRANSPORT_POLICY;
  #state: 'open' | 'closed' = 'open';
  #binding: Promise<void> | undefined;
  #boundPort: number | undefined;
  #boundHost: string | undefined;
  #listening: Promise<void> | undefined;
  #server: QUICServer | undefined;
  #onConnection: ((connection: Connection) => void) | undefined;
  readonly #connections = new Set<QuicConnection>();
  readonly #owners = new WeakMap<QUICConnection, QuicConnection>();
  /** Native paths of registered connections (those on the library's path have none). */
  readonly #paths = new WeakMap<QUICConnection, NativePath>();
  readonly #dials = new Set<PendingDial>();
  readonly #attempts = new Set<Promise<unknown>>();
  #closing: Promise<void> | undefined;
  #libraryErrors = 0;
  #nativeCount = 0;
  #libraryCount = 0;
  readonly #udpErrors = new Set<string>();
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
    const retryTokenMs = options.retryTokenMs ?? DEFAULT_RETRY_TOKEN_MS;
    if (typeof retryTokenMs !== 'number' || !Number.isFinite(retryTokenMs) || retryTokenMs <= 0) {
      throw new RangeError(`retryTokenMs must be a finite number > 0, got ${String(options.retryTokenMs)}`);
    }
    this.#retryTokens = new RetryTokens(retryTokenMs);
    this.#overrides = options.quicConfig ?? {};
    if (options.tuning !== false) {
      this.#probe = seamProbe(options.identity);
      if (!this.#probe.ok) this.report(`@matrixai/quic internals differ, the library's own path is used (${this.#probe.failed.join('; ')})`, undefined);
    }
    this.#native = this.#probe?.ok === true;
    const self = this;
    this.#admission = new InboundAdmission({
      get policy() {
        return self.#policy;
      },
      allowInbound: options.allowInbound,
      refusing: () => this.#state === 'closed' || this.#onConnection === undefined,
      ownerOf: (quic) => this.#owners.get(quic),
      takeOver: (quic, peerId) => this.#takeOver(quic, peerId),
      report: (what, error) => this.report(what, error),
    });
    this.#socket = new QUICSocket({ logger: this.#libraryLogger });
    this.#socket.addEventListener('EventError', (event: Event) => this.libraryError('socket', detailOf(event)));
    this.#socketPath = new SocketPath(this.#socket, {
      registered: (quic) => this.#registered(quic),
      unregistered: (quic) => this.#admission.drop(quic),
      failed: (where, error) => this.libraryError(where, error),
      udpError: (error) => this.#udpError(error),
    });
    this.enforcesAdmission = this.#socketPath.hooked;
    this.#host = {
      localPeerId: this.localPeerId,
      get maxProtocolLength() {
        return self.#policy.maxProtocolLength;
      },
      get headerTimeoutMs() {
        return self.#policy.handshakeTimeoutMs;
      },
      nextId: () => (this.#nextId++).toString(36),
      connectionEnded: (connection) => {
        this.#connections.delete(connection);
        this.#admission.drop(connection.quic);
      },
      report: (what, error) => this.report(what, error),
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
    let streams = 0;
    for (const connection of this.#connections) streams += connection.streamCount;
    return {
      connections: this.#connections.size + this.#admission.awaitingControl(),
      dialing: this.#dials.size,
      handshaking: this.#admission.handshaking,
      streams,
      libraryConnections: this.#socketPath.libraryConnections,
      refused: this.#admission.refused,
      libraryErrors: this.#libraryErrors,
      seam: {
        path: this.#native ? 'native' : 'library',
        probe: this.#probe,
        nativeConnections: this.#nativeCount,
        libraryConnections: this.#libraryCount,
      },
    };
  }

  configure(policy: TransportPolicy): void {
    this.#policy = { ...DEFAULT_TRANSPORT_POLICY, ...policy };
    this.#admission.configure(this.#policy);
    this.#server?.updateConfig(this.#serverConfig());
  }

  /** Binds the UDP socket (idempotent). Resolves with the port. */
  async start(): Promise<number> {
    if (this.#state === 'closed') throw new TransportError('closed', `adapter ${this.localPeerId} is closed`);
    this.#binding ??= (async () => {
      try {
        await this.#socket.start({ host: this.#bindHost, port: this.#bindPort });
      } catch (error) {
        await this.#socketPath.failedToStart();
        throw error;
      }
      this.#boundPort = this.#socket.port;
      this.#boundHost = this.#socket.host;
      this.#socketPath.started();
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
        crypto: this.#retryTokens.serverCrypto(),
        config: this.#serverConfig(),
        reasonToCode,
        codeToReason: remoteStreamError,
        // Bounds the handshake of an accepted connection that goes silent.
        minIdleTimeout: this.#policy.connectTimeoutMs,
        logger: this.#libraryLogger,
      });
      server.addEventListener('EventError', (event: Event) => this.libraryError('server', detailOf(event)));
      server.addEventListener(quicEvents.EventQUICServerConnection.name, (event: Event) =>
        this.#admission.started(detailOf<QUICConnection>(event)),
      );
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
      /** The library's attempt is over (it resolved or rejected): nothing left to stop. */
      let attemptOver = false;
      const onAbort = (): void => dial.fail(new TransportError('aborted', 'dial aborted'));
      const finish = (): boolean => {
        if (dial.settled) return false;
        dial.settled = true;
        signal?.removeEventListener('abort', onAbort);
        this.#dials.delete(dial);
        // Stops the library's attempt; a connection it makes anyway is closed below.
        if (!attemptOver) controller.abort(new Error('dial settled'));
        return true;
      };
      const dial: PendingDial = {
        settled: false,
        fail: (error) => {
          if (finish()) reject(error);
        },
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
            config: { ...quicConfig(this.#policy, this.#identity, this.#overrides, target.host), verifyCallback: libraryVerify(verifyCallback) },
            reasonToCode,
            codeToReason: remoteStreamError,
            logger: this.#libraryLogger,
          },
          { timer: this.#policy.connectTimeoutMs, signal: controller.signal },
        );
      })();
      const tracked = attempt.then(
        (client) => {
          attemptOver = true;
          if (client === undefined) return;
          client.addEventListener('EventError', (event: Event) => {
            const error = detailOf(event);
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
            transport: this.#transportFor(client.connection),
            direction: 'outbound',
            remotePeerId: peerId,
          });
          this.#owners.set(client.connection, connection);
          if (connection.isClosed) {
            dial.fail(connection.connectionError() ?? new TransportError('closed', 'the connection closed during the dial'));
            return;
          }
          this.#connections.add(connection);
          if (finish()) resolve(connection);
          else connection.close(ConnectionErrorCode.Abandoned, reasonFor(ConnectionErrorCode.Abandoned));
        },
        (error: unknown) => {
          attemptOver = true;
          dial.fail(this.#dialError(error, address));
        },
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
    for (const quic of this.#admission.closeAll()) {
      // Past TLS: closed with Shutdown like the others. Still in TLS: the server's stop below ends it.
      const owner = this.#owners.get(quic);
      if (owner !== undefined) handedOver.push(owner);
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

  /** Logs a failure that peerline caught; never throws. */
  report(what: string, error: unknown): void {
    try {
      this.#logger.warn(`peerline quic ${this.localPeerId.slice(0, 8)}: ${what}`, error);
    } catch {
      // A logger that throws is not our failure to report.
    }
  }

  /** Counts and reports an error the library threw from one of its handlers (caught here). */
  libraryError(where: string, error: unknown): void {
    this.#libraryErrors += 1;
    this.report(`${where}: library error`, error);
  }

  #udpError(error: unknown): void {
    // One line per kind of failure: a send that fails tends to fail for every datagram.
    const code = String((error as { code?: unknown } | undefined)?.code ?? describe(error));
    if (this.#udpErrors.has(code)) return;
    this.#udpErrors.add(code);
    this.report('udp socket', error);
  }

  /** A connection the library just registered (either side, before its handshake). */
  #registered(quic: QUICConnection): void {
    quic.addEventListener('EventError', (event: Event) => {
      const error = detailOf(event);
      this.libraryError('connection', error);
      this.#owners.get(quic)?.libraryFailure(error);
    });
    const path = nativePathFor(quic, this.#native, this.#socketPath, (where, error) => this.report(`connection ${where}`, error));
    if (path !== undefined) this.#paths.set(quic, path);
    if (isServerConnection(quic)) this.#admission.register(quic);
  }

  #transportFor(quic: QUICConnection) {
    const path = this.#paths.get(quic);
    if (path !== undefined) {
      this.#nativeCount += 1;
      return path;
    }
    this.#libraryCount += 1;
    return libraryPath(quic, (where, error) => this.libraryError(where, error));
  }

  /** Wraps a verified, admitted inbound connection; it is handed over when the dialler's control stream arrives. */
  #takeOver(quic: QUICConnection, peerId: string): void {
    // The dialler opens its control stream after *its* certificate check
    // passed, so a dialler that refused us never shows up as a connection here.
    const connection = new QuicConnection({
      host: this.#host,
      quic,
      transport: this.#transportFor(quic),
      direction: 'inbound',
      remotePeerId: peerId,
      onReady: (ready) => {
        this.#admission.drop(quic);
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
    if (connection.isClosed) this.#admission.drop(quic);
  }

  #serverConfig(): Partial<QUICConfig> & { key: string; cert: string } {
    // Each registered connection gets its own verify callback (admission.ts);
    // this one only serves if the registration hook missed one.
    return {
      ...quicConfig(this.#policy, this.#identity, this.#overrides, 'listener'),
      verifyCallback: libraryVerify(this.#admission.fallbackVerify),
    };
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
