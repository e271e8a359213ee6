/**
 * What admission control (`../admission.ts`) does to a library connection
 * that the library's API does not offer: its own TLS verify callback (one
 * that knows the remote address), and refusing it before TLS with a
 * transport close that the dialler can read.
 */
import { errors as quicErrors, events as quicEvents, type QUICConfig, type QUICConnection, type QUICSocket } from '@matrixai/quic';
import { connectionInternals } from './internals.js';

/** QUIC transport error CONNECTION_REFUSED (RFC 9000 20.1). */
export const QUIC_CONNECTION_REFUSED = 0x02;

/** A connection the library made for an inbound handshake (as opposed to one we dialled). */
export function isServerConnection(quic: QUICConnection): boolean {
  return connectionInternals(quic).type === 'server';
}

/** A TLS verify callback as peerline writes them: undefined accepts, a `CryptoError` number refuses. */
export type VerifyCertificates = (certs: Uint8Array[]) => Promise<number | undefined>;

/**
 * `verify` as the library's `verifyCallback`: the library calls it with the
 * peer's certificate chain (DER) and reads the same answer, but types the
 * answer as its CryptoError enum, which this adapter does not import.
 */
export function libraryVerify(verify: VerifyCertificates): QUICConfig['verifyCallback'] {
  return verify as QUICConfig['verifyCallback'];
}

/** Gives this one connection its own TLS verify callback (before its handshake). Returns false if it has no config to change. */
export function verifyWith(quic: QUICConnection, verify: VerifyCertificates): boolean {
  const c = connectionInternals(quic);
  if (typeof c.config !== 'object' || c.config === null) return false;
  c.config = { ...c.config, verifyCallback: libraryVerify(verify) };
  return true;
}

/**
 * Lets the next datagram the connection receives be handled (the server's
 * first flight goes out, so that the dialler can read what follows), then
 * calls `refuse`. Returns false when the connection has no `recv` to wrap
 * (the caller refuses at once).
 */
export function refuseAfterFirstFlight(quic: QUICConnection, refuse: () => void): boolean {
  const c = connectionInternals(quic);
  const recv = c.recv;
  if (typeof recv !== 'function') return false;
  c.recv = async (...args: Parameters<typeof recv>) => {
    c.recv = recv;
    try {
      await recv.apply(quic, args);
    } finally {
      refuse();
    }
  };
  return true;
}

/**
 * Closes a connection whose handshake has not completed with the transport
 * error CONNECTION_REFUSED and `reason`, the way the library closes one
 * itself (its error event makes it send the close and end its start).
 * Returns false when it was already closing.
 */
export function closeBeforeTls(quic: QUICConnection, reason: string): boolean {
  const native = connectionInternals(quic).conn;
  if (native.isClosed() || native.isDraining()) return false;
  native.close(false, QUIC_CONNECTION_REFUSED, Buffer.from(reason));
  const data = native.localError() ?? { isApp: false, errorCode: QUIC_CONNECTION_REFUSED, reason: Buffer.from(reason) };
  quic.dispatchEvent(new quicEvents.EventQUICConnectionError({ detail: new quicErrors.ErrorQUICConnectionLocal(`refused: ${reason}`, { data }) }));
  return true;
}

/** The library's logger interface, as far as it uses it; everything it says is dropped. */
export type LibraryLogger = NonNullable<ConstructorParameters<typeof QUICSocket>[0]['logger']>;
export function quietLogger(): LibraryLogger {
  const logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {}, getChild: () => logger };
  return logger as unknown as LibraryLogger;
}
