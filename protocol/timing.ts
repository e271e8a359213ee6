import type { TransportPolicy } from './adapter.js';

/**
 * peerline's timing and wire-limit defaults, in one table. The engine's
 * options start from it (`runtime/defaults.ts`, where each option is
 * documented), the connection machine's delays stand for it until the engine
 * provides its own (`machines/connection-machine.ts`), and the QUIC adapter
 * derives its liveness settings from it until `configure()` hands it the
 * engine's (`DEFAULT_TRANSPORT_POLICY`). js-libp2p keeps such numbers in one
 * `constants.defaults.ts` for the same reason: one place to read and change.
 */
export const TIMING_DEFAULTS = Object.freeze({
  /** Dial (transport connect) timeout per attempt. */
  connectTimeoutMs: 10_000,
  /** Longest wait for a dial slot. */
  dialQueueTimeoutMs: 30_000,
  /** Identity check and application handshake. */
  handshakeTimeoutMs: 10_000,
  /** Stream open: header sent until the remote's ACK. */
  streamOpenTimeoutMs: 10_000,
  /** A ping every `intervalMs` while ready; `timeoutMs` for each pong; `misses` in a row make the connection dead. */
  heartbeat: Object.freeze({ intervalMs: 5_000, timeoutMs: 2_000, misses: 3 }),
  /** Close a connection with nothing in use after this long. */
  idleTimeoutMs: 60_000,
  /** Streams in flight may finish this long after a drain starts. */
  drainDeadlineMs: 5_000,
  /** After a force close, the wait for the transport to confirm it. */
  forceCloseGraceMs: 1_000,
  /** The first wait of every backoff (retries, pinned peers, the dial backoff). */
  backoffInitialMs: 1_000,
  /** How long one failure of a pinned peer counts towards its restart intensity. */
  restartPeriodMs: 60_000,
  /** The delay between the staggered dials of one peer's addresses (RFC 8305). */
  dialStaggerMs: 250,
});

/** Limits both ends of a connection must agree on: the engine's defaults and the QUIC adapter's until `configure()`. */
export const WIRE_DEFAULTS = Object.freeze({
  /** Longest protocol name in a stream header, in bytes. */
  maxProtocolLength: 256,
  /** Inbound streams accepted per connection (QUIC's default stream limit). */
  maxInboundStreamsPerConnection: 100,
});

/** What a transport policy is made of: the engine's options (or the defaults above) name them so. */
export interface TransportTimings {
  readonly connectTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly heartbeat: { readonly intervalMs: number; readonly timeoutMs: number; readonly misses: number };
  readonly maxProtocolLength: number;
  readonly maxInboundStreamsPerConnection: number;
}

/** The timing and limits an adapter gets (`TransportPolicy`), from the engine's options or the defaults. */
export function transportPolicyOf(o: TransportTimings): TransportPolicy {
  return {
    connectTimeoutMs: o.connectTimeoutMs,
    handshakeTimeoutMs: o.handshakeTimeoutMs,
    heartbeatIntervalMs: o.heartbeat.intervalMs,
    heartbeatTimeoutMs: o.heartbeat.timeoutMs,
    heartbeatMisses: o.heartbeat.misses,
    maxProtocolLength: o.maxProtocolLength,
    maxInboundStreams: o.maxInboundStreamsPerConnection,
  };
}
