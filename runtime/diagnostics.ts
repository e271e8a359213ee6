/**
 * peerline's `node:diagnostics_channel` channels, as undici publishes its
 * own (`undici:request:create`, ...): APMs, OpenTelemetry bridges and ad-hoc
 * tools subscribe by name, without a reference to the engine and without an
 * option at construction. A message is built only when the channel has a
 * subscriber, so an engine nobody watches pays one property read per event.
 *
 * Times are on the engine's clock (`engine.clock.now()`: `performance.now()`
 * by default, virtual time on a `VirtualClock`), durations in milliseconds.
 * Every message names the engine by `localPeerId` (its `engine.peerId`).
 * Messages are frozen by nobody and read by many: subscribers must not
 * change them.
 *
 * @example
 * import { subscribe } from 'node:diagnostics_channel';
 * subscribe('peerline:stream:open', (message) => {
 *   const m = message as StreamOpenMessage;
 *   if (!m.ok) console.log(`${m.peerId} ${m.protocol}: ${m.code} after ${m.durationMs} ms`);
 * });
 */
import { channel } from 'node:diagnostics_channel';
import type { ErrorCode } from '../protocol/codes.js';
import type { ConnectionState } from '../machines/types.js';
import type { PeerlineError } from './errors.js';

/** The channel names, one per kind of event. */
export const CHANNELS = Object.freeze({
  transition: 'peerline:transition',
  streamOpen: 'peerline:stream:open',
  requestError: 'peerline:request:error',
  dial: 'peerline:dial',
  admissionRefused: 'peerline:admission:refused',
  heartbeat: 'peerline:heartbeat',
} as const);

/** `peerline:transition`: a peer's machine changed top-level state. */
export interface TransitionMessage {
  readonly localPeerId: string;
  readonly peerId: string;
  /** null when the machine was just created. */
  readonly from: ConnectionState | null;
  readonly to: ConnectionState;
  /** Type of the event that caused it. */
  readonly event: string;
  readonly at: number;
}

/**
 * `peerline:stream:open`: a stream request (`openStream`, a request pushed
 * into `engine.requests`, a leased connection's `openStream`) was answered.
 * `durationMs` runs from the request's arrival to its answer: queueing for
 * the connection and for stream credit, the dial, the handshake, the open
 * and the remote's ACK.
 */
export type StreamOpenMessage =
  | {
      readonly localPeerId: string;
      readonly peerId: string;
      readonly protocol: string;
      readonly ok: true;
      readonly durationMs: number;
      readonly at: number;
    }
  | {
      readonly localPeerId: string;
      readonly peerId: string;
      readonly protocol: string;
      readonly ok: false;
      readonly code: ErrorCode;
      readonly error: PeerlineError;
      readonly durationMs: number;
      readonly at: number;
    };

/** `peerline:request:error`: a request (a stream or a lease of `withConnection`) was answered with an error. */
export interface RequestErrorMessage {
  readonly localPeerId: string;
  readonly peerId: string;
  /** '' for a lease. */
  readonly protocol: string;
  readonly kind: 'stream' | 'lease';
  readonly code: ErrorCode;
  readonly error: PeerlineError;
  readonly durationMs: number;
  readonly at: number;
}

/** `peerline:dial`: a dial (every address of the peer raced) ended. */
export type DialMessage =
  | {
      readonly localPeerId: string;
      readonly peerId: string;
      readonly addresses: readonly string[];
      readonly ok: true;
      /** The transport connection made. */
      readonly connectionId: string;
      readonly durationMs: number;
      readonly at: number;
    }
  | {
      readonly localPeerId: string;
      readonly peerId: string;
      readonly addresses: readonly string[];
      readonly ok: false;
      readonly code: ErrorCode;
      readonly message: string;
      readonly durationMs: number;
      readonly at: number;
    };

/**
 * `peerline:admission:refused`: admission control refused an inbound
 * connection, in the engine or in the adapter (QUIC refuses before TLS; its
 * refusals carry no peer id).
 */
export interface AdmissionRefusedMessage {
  readonly localPeerId: string;
  /** The `ConnectionErrorCode` name: 'ConnectionLimit', 'HandshakeLimit', 'RateLimited', 'AdmissionDenied', 'IdentityMismatch'. */
  readonly code: string;
  readonly peerId: string | undefined;
  readonly remoteAddress: string | undefined;
  readonly at: number;
}

/** `peerline:heartbeat`: a pong answered our ping; the round trip, as `metrics().histograms.heartbeatRttMs` records it. */
export interface HeartbeatMessage {
  readonly localPeerId: string;
  readonly peerId: string;
  readonly rttMs: number;
  readonly at: number;
}

/** The channels themselves; publish only after checking `hasSubscribers`. */
export const diagnostics = {
  transition: channel(CHANNELS.transition),
  streamOpen: channel(CHANNELS.streamOpen),
  requestError: channel(CHANNELS.requestError),
  dial: channel(CHANNELS.dial),
  admissionRefused: channel(CHANNELS.admissionRefused),
  heartbeat: channel(CHANNELS.heartbeat),
};
