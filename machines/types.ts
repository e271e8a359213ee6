import type { ConnectionErrorCode, ErrorInfo } from './codes.js';

/** Version of the application handshake spoken on the control channel. */
export const PROTOCOL_VERSION = 1;

/**
 * The public names of the machine's top-level states. `closed` and `gaveUp`
 * are final: `gaveUp` is where a pinned peer ends when its retry budget
 * (`pinnedRetry.maxAttempts`) or its restart intensity is spent.
 */
export const ConnectionStates = [
  'connecting',
  'handshaking',
  'ready',
  'draining',
  'forceClosed',
  'errored',
  'closed',
  'gaveUp',
] as const;
export type ConnectionState = (typeof ConnectionStates)[number];

/** A request as the machine sees it; the reply channel stays in the runtime. */
export interface RequestRef {
  readonly id: string;
  /** `stream`: open a stream. `lease`: hold the connection for `withConnection`. */
  readonly kind: 'stream' | 'lease';
  readonly protocol: string;
  /**
   * Wait through connection failures (gRPC's waitForReady): while the peer
   * is backing off (`errored`) the request stays queued for the next
   * attempt instead of failing at once. Bounded by the request's deadline.
   */
  readonly waitForReady?: boolean;
}

/** Why the connection is ending on purpose (drain, force close, shutdown). */
export interface Ending {
  /** Wire code the transport is closed with at the end. */
  readonly code: ConnectionErrorCode;
  /** The answer for requests that arrive, or are still waiting, while it ends. */
  readonly error: ErrorInfo;
  /** True when the remote asked for it (it sent `goaway`). */
  readonly remote: boolean;
}

export interface ConnectionLimits {
  /** Requests waiting for the connection (or for stream credit) per peer. */
  readonly maxQueued: number;
  /** Outbound streams open or opening at once on one connection. */
  readonly maxStreams: number;
  /** Inbound streams open at once on one connection. */
  readonly maxInboundStreams: number;
  /** Total dial attempts before giving up (the first one included), for peers that are not pinned. */
  readonly maxAttempts: number;
  /** Consecutive failed attempts after which a pinned peer gives up (`gaveUp`). Infinity: never. */
  readonly pinnedMaxAttempts: number;
  /**
   * Restart intensity of a pinned peer: more than this many failures (entries
   * into `errored`) within the `restartPeriod` delay and it gives up.
   * Infinity: no limit (and no timer is kept for it).
   */
  readonly maxRestarts: number;
  /**
   * A peer that is not pinned and whose dial failed with no attempt left
   * stays `errored` for the `retryBackoff` delay (the dial backoff) before
   * it closes, so a fresh request fails fast instead of dialling again at
   * once. False: it closes at once.
   */
  readonly dialBackoff: boolean;
}

export interface ConnectionInput {
  readonly peerId: string;
  readonly localPeerId: string;
  /** `inbound` machines start in `handshaking` on `connectionId`. */
  readonly direction: 'outbound' | 'inbound';
  readonly connectionId?: string;
  readonly pinned: boolean;
  readonly limits: ConnectionLimits;
}

export interface ConnectionContext {
  readonly peerId: string;
  readonly localPeerId: string;
  /** Direction of the current (or next) transport connection. */
  direction: 'outbound' | 'inbound';
  /** The transport connection in use; null while there is none. */
  connectionId: string | null;
  pinned: boolean;
  /** Consecutive failed attempts since the last time the peer was ready. */
  attempts: number;
  /** Pinned peers: failures within the restart period (each one decays after it). */
  restarts: number;
  /** Sequence of restart-decay timers (their ids). */
  restartSeq: number;
  /** The connection that failed last had been `ready` (a lost connection, not a failed dial). */
  wasReady: boolean;
  /** Requests waiting: for `ready`, or for stream credit in `ready`. Bounded by maxQueued. */
  queue: RequestRef[];
  /** Stream opens in progress (header sent, waiting for ACK). */
  opening: RequestRef[];
  /** Streams open on the current connection, both directions. */
  streams: number;
  inboundStreams: number;
  /** Leases held by `withConnection` callers. */
  leases: number;
  lastError: ErrorInfo | null;
  ending: Ending | null;
  limits: ConnectionLimits;
  /** Inbound streams that arrived on an inbound connection before its hello: decided once `ready`. */
  heldInbound: HeldInbound[];
}

/** An inbound stream waiting in `handshaking` for the connection to be ready. */
export interface HeldInbound {
  readonly connectionId: string;
  readonly streamId: string;
  readonly protocol: string;
}

export type ConnectionEvent =
  | { type: 'REQUEST'; request: RequestRef }
  | { type: 'REQUEST.CANCEL'; id: string; error: ErrorInfo }
  | { type: 'DIAL.SLOT' }
  | { type: 'DIAL.QUEUE_FULL' }
  | { type: 'CONNECTION.INBOUND'; connectionId: string }
  | { type: 'CONNECTION.CLOSED'; connectionId: string; code: number | undefined; error: boolean; reason: string }
  | { type: 'CONTROL.HELLO'; connectionId: string; version: number; peerId: string }
  | { type: 'CONTROL.HELLO_ACK'; connectionId: string; version: number; peerId: string }
  | { type: 'CONTROL.GOAWAY'; connectionId: string }
  | { type: 'STREAM.OPENED'; id: string }
  | { type: 'STREAM.OPEN_FAILED'; id: string; error: ErrorInfo }
  | { type: 'STREAM.OPEN_TIMEOUT'; id: string }
  /** `count` streams (default 1) of this direction closed on `connectionId`. */
  | { type: 'STREAM.CLOSED'; connectionId: string; inbound: boolean; count?: number }
  | { type: 'STREAM.INBOUND'; connectionId: string; streamId: string; protocol: string }
  | { type: 'LEASE.RELEASE'; connectionId: string }
  | { type: 'PRUNE' }
  /** The peer is pinned (kept connected) or no longer. */
  | { type: 'PIN'; pinned: boolean }
  /**
   * The runtime's heartbeat of `connectionId` (started by `startHeartbeat`)
   * failed: `misses` pings in a row went unanswered, or, with `probe`, the
   * ping sent when the network changed did.
   */
  | { type: 'HEARTBEAT.FAILED'; connectionId: string; misses: number; probe: boolean }
  /** One failure leaves the restart-intensity window. */
  | { type: 'RESTART.DECAY' }
  | { type: 'DRAIN' }
  | { type: 'FORCE_CLOSE'; reason?: string }
  | { type: 'SHUTDOWN'; force: boolean };

/** Output of the `dial` actor. Errors are `ErrorInfo`. */
export interface DialOutput {
  readonly connectionId: string;
}
