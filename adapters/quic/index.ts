/**
 * The QUIC transport: @matrixai/quic with Ed25519 identities and pinned
 * mutual TLS, behind peerline's `Adapter` interface.
 *
 * @example
 * const identity = await generateIdentity();
 * const adapter = createQuicAdapter({ identity });
 * const engine = createEngine({ adapter });
 * await engine.start();
 * console.log(engine.peerId, quicAddress(adapter.port));
 */
export {
  ALPN,
  DEFAULT_RETRY_TOKEN_MS,
  DEFAULT_TRANSPORT_POLICY,
  QuicAdapter,
  createQuicAdapter,
  quicTimings,
  type QuicAdapterOptions,
  type QuicAdapterStats,
  type QuicLogger,
} from './adapter.js';
export { QuicConnection, MAX_WAITING_OPENS } from './connection.js';
export { QUIC_SCHEME, parseQuicAddress, quicAddress, type QuicTarget } from './address.js';
export {
  CERT_FILE,
  IdentityError,
  KEY_FILE,
  checkIdentity,
  generateIdentity,
  isPeerId,
  loadIdentity,
  peerIdFromCertificate,
  peerIdFromPublicKey,
  publicKeyFromPeerId,
  saveIdentity,
  validateIdentity,
  type QuicIdentity,
} from './identity.js';
export { MAX_CONTROL_FRAME, MAX_NACK_REASON, StreamCode } from './wire.js';
export { CONTROL_BURST, CONTROL_RATE, MAX_CONTROL_BACKLOG } from './control.js';
export type { SeamProbe, SeamState } from './seam/index.js';
export { TransportError } from '../../protocol/adapter.js';
export type { Adapter, Connection, Stream, TransportPolicy } from '../../protocol/adapter.js';
