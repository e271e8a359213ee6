/**
 * The seam between peerline's QUIC adapter and @matrixai/quic 2.0.9's
 * internals. Everything that reaches past the library's public API lives in
 * this folder, typed (`internals.ts`), checked once at startup (`probe.ts`)
 * and reported in `adapter.stats().seam`:
 *
 * - `socket.ts`: the socket's message handler, connection map and UDP socket;
 * - `native-connection.ts`, `native-stream.ts`: the native path, peerline's
 *   own transport layer over the library's quiche binding, once a connection
 *   is set up;
 * - `library-stream.ts`: the library's own path, taken when the probe fails
 *   (or with `tuning: false`);
 * - `connection-hooks.ts`: what admission control does to a connection.
 *
 * The rest of the adapter works only with `StreamTransport` and
 * `TransportStream` (`transport.ts`) and the functions exported here.
 */
import type { QUICConnection } from '@matrixai/quic';
import { connectionShape } from './internals.js';
import { LibraryPath } from './library-stream.js';
import { NativePath } from './native-connection.js';
import type { SeamProbe } from './probe.js';
import type { SocketPath } from './socket.js';
import type { StreamTransport } from './transport.js';

export { detailOf } from './internals.js';
export { LibraryPath, LocalReset, reasonToCode } from './library-stream.js';
export { NativePath } from './native-connection.js';
export { probeSeam, seamProbe, type ProbeKeys, type ProbeTargets, type SeamProbe } from './probe.js';
export { LOOPBACK_DATAGRAM, SocketPath, datagramSizes, isLoopback, type SocketHooks } from './socket.js';
export { localStreamError, remoteStreamError, type StreamTransport, type TransportStream } from './transport.js';
export {
  QUIC_CONNECTION_REFUSED,
  closeBeforeTls,
  isServerConnection,
  libraryVerify,
  quietLogger,
  refuseAfterFirstFlight,
  verifyWith,
  type LibraryLogger,
  type VerifyCertificates,
} from './connection-hooks.js';

/** Which path an adapter's connections take, and why. */
export interface SeamState {
  /** 'native' when the probe passed and tuning is on; 'library' otherwise. */
  readonly path: 'native' | 'library';
  /** The probe's result (not run with `tuning: false`). */
  readonly probe: SeamProbe | undefined;
  /** Connections registered on the native path, and on the library's (shape mismatch, or the library path chosen). */
  readonly nativeConnections: number;
  readonly libraryConnections: number;
}

/**
 * The native path for a connection the library just registered, when `native`
 * is on and the connection has the probed shape; undefined otherwise (it then
 * takes the library's path, made by `libraryPath` when it is handed over).
 */
export function nativePathFor(
  quic: QUICConnection,
  native: boolean,
  socket: SocketPath,
  onError: (where: string, error: unknown) => void,
): NativePath | undefined {
  if (!native || connectionShape(quic).length > 0) return undefined;
  return new NativePath(quic, socket, onError);
}

/** The library's own path for a connection. */
export function libraryPath(quic: QUICConnection, onError: (where: string, error: unknown) => void): StreamTransport {
  return new LibraryPath(quic, onError);
}
