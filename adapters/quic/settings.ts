/**
 * The QUIC settings peerline derives from the engine's policy: liveness
 * (idle timeout, keep-alive), stream credit, datagram sizes, ALPN.
 */
import type { QUICConfig } from '@matrixai/quic';
import type { TransportPolicy } from '../../protocol/adapter.js';
import { TIMING_DEFAULTS, WIRE_DEFAULTS, transportPolicyOf } from '../../protocol/timing.js';
import { datagramSizes } from './seam/index.js';
import type { QuicIdentity } from './identity.js';
import { validateTransportPolicy } from './options.js';

/** The engine's defaults (the one table of them), used until `configure()` is called. */
export const DEFAULT_TRANSPORT_POLICY: Readonly<TransportPolicy> = Object.freeze(transportPolicyOf({ ...TIMING_DEFAULTS, ...WIRE_DEFAULTS }));

/** ALPN: a peerline endpoint only completes a handshake with another one (of the same wire version). */
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

/**
 * The library configuration for one side. `remoteHost` (a dial's target)
 * picks the datagram size: large to a loopback address, quiche's default
 * elsewhere. A listener accepts large datagrams and sends them to peers that
 * accept them (QUIC sends at most what the receiver announced).
 */
export function quicConfig(
  policy: TransportPolicy,
  identity: QuicIdentity,
  overrides: Partial<QUICConfig>,
  remoteHost: string | 'listener',
): Partial<QUICConfig> & { key: string; cert: string } {
  const timings = quicTimings(policy);
  return {
    verifyPeer: true,
    applicationProtos: [ALPN],
    maxIdleTimeout: timings.maxIdleTimeout,
    keepAliveIntervalTime: timings.keepAliveIntervalTime,
    // The remote may open this many streams to us: the engine's inbound
    // limit plus the control stream. No unidirectional streams are used.
    initialMaxStreamsBidi: policy.maxInboundStreams + 1,
    initialMaxStreamsUni: 0,
    ...datagramSizes(remoteHost === 'listener' ? '127.0.0.1' : remoteHost),
    ...overrides,
    key: identity.privateKeyPem,
    cert: identity.certificatePem,
  };
}
