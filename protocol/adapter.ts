/**
 * The transport-neutral adapter interface. Every transport (the in-memory
 * network, QUIC) implements exactly this; the runtime knows nothing else about
 * a transport. Adapters never import runtime internals.
 *
 * Contract shared by all adapters:
 * - A `Connection` is already authenticated: `remotePeerId` is the identity the
 *   transport verified (TLS certificate for QUIC, node name for memory). A dial
 *   whose remote is not the expected peer rejects with a `TransportError` of
 *   kind `identity-mismatch` and never yields a connection.
 * - The control channel is ordered and reliable while the connection is up; the
 *   runtime runs its handshake and heartbeats on it.
 * - Opening a stream sends a header naming the protocol and waits for the
 *   remote's ACK (resolve) or NACK (reject with kind `rejected` and the reason).
 * - Every callback is invoked at most once per event and never throws into the
 *   adapter: handlers are supplied by the runtime, which catches everything.
 */
import type { ControlMessage } from './control.js';

/** Why a transport operation failed. The runtime maps kinds to error codes. */
export type TransportErrorKind =
  | 'refused'
  | 'unreachable'
  | 'aborted'
  | 'identity-mismatch'
  | 'rejected'
  | 'closed'
  | 'stream-limit'
  | 'protocol';

export class TransportError extends Error {
  readonly kind: TransportErrorKind;
  /** Application close code, when the remote closed with one. */
  readonly closeCode: number | undefined;
  constructor(kind: TransportErrorKind, message: string, closeCode?: number) {
    super(message);
    this.name = 'TransportError';
    this.kind = kind;
    this.closeCode = closeCode;
  }
}

/** A bidirectional byte stream, already accepted by the remote (ACKed). */
export interface Stream {
  readonly id: string;
  readonly protocol: string;
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  /** Close both directions gracefully (pending writes are flushed). */
  close(): void;
  /** Abort both directions at once; the remote sees an error. */
  abort(reason?: string): void;
  /** Resolves once, when both directions are finished (never rejects). */
  readonly closed: Promise<void>;
}

/** A stream the remote asked to open; the runtime accepts or rejects it. */
export interface IncomingStream {
  readonly protocol: string;
  /** Sends the ACK and yields the stream. */
  accept(): Stream;
  /** Sends a NACK with a reason; the stream is discarded. */
  reject(reason: string): void;
}

export interface CloseInfo {
  /** True when this side called `close()`. */
  readonly local: boolean;
  /** Application error code the closing side gave (see ConnectionErrorCode). */
  readonly code: number | undefined;
  readonly reason: string;
  /** True when the transport failed rather than being closed on purpose. */
  readonly error: boolean;
}

export interface ConnectionHandlers {
  onControl(message: ControlMessage): void;
  onStream(stream: IncomingStream): void;
  onClose(info: CloseInfo): void;
}

export interface Connection {
  /** Unique among this adapter's connections. */
  readonly id: string;
  readonly localPeerId: string;
  readonly remotePeerId: string;
  readonly direction: 'inbound' | 'outbound';
  /** The remote's transport address (QUIC: `quic://HOST:PORT`), when the transport has one. */
  readonly remoteAddress?: string | undefined;
  /** Installs the handlers; events before this call are buffered. */
  setHandlers(handlers: ConnectionHandlers): void;
  sendControl(message: ControlMessage): void;
  openStream(protocol: string, options: { signal: AbortSignal }): Promise<Stream>;
  /** Closes the connection with an application code; idempotent. */
  close(code: number, reason: string): void;
}

export interface DialOptions {
  /** Aborting it abandons the dial; the adapter must then reject promptly. */
  readonly signal: AbortSignal;
}

/**
 * The inbound gate: true admits the peer, false refuses it. A promise is
 * awaited for at most the handshake timeout (no answer by then refuses);
 * throwing or rejecting refuses. `remoteAddress` is the transport address the
 * connection comes from, when the transport has one.
 */
export type InboundGate = (peerId: string, remoteAddress: string | undefined) => boolean | Promise<boolean>;

/** Admission control the engine hands to an adapter that enforces it itself (see `Adapter.enforcesAdmission`). */
export interface AdmissionPolicy {
  /** Inbound connections at once: those the engine holds plus those still in the transport's handshake. */
  readonly maxInboundConnections: number;
  /** Inbound connections whose handshake (transport and application hello) has not finished. */
  readonly maxHandshakingConnections: number;
  /** New inbound connections per remote address: a token bucket of `connections`, refilled over `windowMs`. */
  readonly inboundRateLimit: { readonly connections: number; readonly windowMs: number };
  /** Asked with the verified peer id before the connection is handed over. */
  readonly allowInbound: InboundGate | undefined;
  /** Inbound connections the engine holds now: all of them, and those whose application handshake is not done. */
  held(): { readonly inbound: number; readonly handshaking: number };
  /** The adapter reports each connection it refused (a `ConnectionErrorCode`), for the engine's metrics. */
  refused(code: number, remoteAddress: string | undefined): void;
}

/** The engine's timing, handed to the adapter before it listens (QUIC derives its idle timeout and keep-alive from it). */
export interface TransportPolicy {
  readonly connectTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
  readonly heartbeatMisses: number;
  /** Longest protocol name in a stream header, in bytes. */
  readonly maxProtocolLength: number;
  /** Inbound streams the engine accepts per connection. */
  readonly maxInboundStreams: number;
  /** Admission control, for an adapter that enforces it (`enforcesAdmission`); the engine enforces it otherwise. */
  readonly admission?: AdmissionPolicy;
}

export interface Adapter {
  readonly localPeerId: string;
  /**
   * True when the adapter applies `TransportPolicy.admission` (limits, rate,
   * gate) itself, before it hands a connection over, so that it can refuse
   * earlier than the engine could. The engine then only keeps count. Absent
   * or false: the engine applies it when the connection is handed over.
   */
  readonly enforcesAdmission?: boolean;
  /** Optional: takes the engine's policy; called once by `engine.start()` before `listen`. */
  configure?(policy: TransportPolicy): void;
  /** Starts accepting connections; each verified inbound connection is handed over. */
  listen(onConnection: (connection: Connection) => void): Promise<void>;
  /** Dials `address` expecting `peerId` on the other side. */
  dial(peerId: string, address: string, options: DialOptions): Promise<Connection>;
  /** Stops listening and closes every connection; idempotent. */
  close(): Promise<void>;
}
