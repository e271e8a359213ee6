/**
 * Codes shared by the machine, the runtime and every adapter.
 *
 * `ConnectionErrorCode` is the application error code a connection is closed
 * with on the wire (QUIC `CONNECTION_CLOSE` application code; the memory
 * network carries it as is). Every close names one: no magic numbers
 * (Polykey issue 592 replaced a bare `1` with exactly this kind of enum).
 */
export enum ConnectionErrorCode {
  ForceClose = 1,
  Drain = 2,
  HeartbeatTimeout = 3,
  IdentityMismatch = 4,
  ProtocolViolation = 5,
  DuplicateConnection = 6,
  Shutdown = 7,
  IdleTimeout = 8,
  HandshakeTimeout = 9,
  ConnectionLimit = 10,
  Abandoned = 11,
  /** Admission control: the inbound gate (`allowInbound`) refused the peer. */
  AdmissionDenied = 12,
  /** Admission control: too many new connections from the remote's address (`inboundRateLimit`). */
  RateLimited = 13,
  /** Admission control: too many inbound connections still handshaking (`maxHandshakingConnections`). */
  HandshakeLimit = 14,
  /** The remote flooded the control channel: it sent control messages too fast, or never read ours. */
  ControlFlood = 15,
}

export enum ConnectionErrorReason {
  ForceClose = 'connection is forcing destruction',
  Drain = 'connection drained',
  HeartbeatTimeout = 'heartbeat timed out',
  IdentityMismatch = 'peer identity does not match',
  ProtocolViolation = 'protocol violation',
  DuplicateConnection = 'duplicate connection, the other one wins',
  Shutdown = 'engine is shutting down',
  IdleTimeout = 'connection idle',
  HandshakeTimeout = 'handshake timed out',
  ConnectionLimit = 'too many connections',
  Abandoned = 'connection no longer wanted',
  AdmissionDenied = 'peer not admitted',
  RateLimited = 'too many connections from this address',
  HandshakeLimit = 'too many connections handshaking',
  ControlFlood = 'control channel flooded',
}

/** The reason text that goes with a code. */
export function reasonFor(code: ConnectionErrorCode): ConnectionErrorReason {
  const name = ConnectionErrorCode[code] as keyof typeof ConnectionErrorReason;
  return ConnectionErrorReason[name];
}

/**
 * The code whose reason text is `reason`, or undefined. Before the QUIC
 * handshake completes no application code can go on the wire (RFC 9000
 * 10.2.3), so refusals at that stage travel as a transport close whose reason
 * phrase is the `ConnectionErrorReason` text; this maps it back.
 */
export function codeForReason(reason: string): ConnectionErrorCode | undefined {
  for (const [name, text] of Object.entries(ConnectionErrorReason)) {
    if (text === reason) return ConnectionErrorCode[name as keyof typeof ConnectionErrorCode];
  }
  return undefined;
}

/** Stable string codes of every error a request or a connection can end with. */
export const ErrorCodes = [
  'CONNECT_TIMEOUT',
  'CONNECT_REFUSED',
  'HANDSHAKE_TIMEOUT',
  'PEER_IDENTITY_MISMATCH',
  'PROTOCOL_VIOLATION',
  'STREAM_REJECTED',
  'STREAM_LIMIT',
  'STREAM_TIMEOUT',
  'QUEUE_FULL',
  'CONNECTION_DRAINING',
  'CONNECTION_FORCE_CLOSED',
  'CONNECTION_LOST',
  'HEARTBEAT_TIMEOUT',
  'ABORTED',
  'ENGINE_STOPPED',
  'NO_ADDRESS',
  'CONNECTION_LIMIT',
  'INVALID_REQUEST',
  'RESUME_GAP',
  'RESUME_EXPIRED',
  'RESUME_REJECTED',
] as const;
export type ErrorCode = (typeof ErrorCodes)[number];

/** The serialisable error a machine keeps in its context and hands to its effects. */
export interface ErrorInfo {
  readonly code: ErrorCode;
  readonly message: string;
  /** The wire close code, when one applies. */
  readonly closeCode?: ConnectionErrorCode;
}

/** The `ErrorInfo` for `code`: the one constructor of them, so every one has the same shape (`closeCode` only when given). */
export function errorInfo(code: ErrorCode, message: string, closeCode?: ConnectionErrorCode): ErrorInfo {
  return closeCode === undefined ? { code, message } : { code, message, closeCode };
}
