/**
 * The parts of @matrixai/quic 2.0.9 that peerline reaches past its public
 * typings for, typed. This file holds every cast from a library object to
 * its internals; the rest of the seam works with these interfaces, and the
 * rest of the adapter works with the seam's own functions (`index.ts`).
 *
 * Each interface lists only what peerline uses. `connectionShape`,
 * `socketShape` and `nativeShape` check that an object has those members
 * (the probe, `probe.ts`, runs them at startup; each connection is checked
 * again when it is registered, so a connection of another shape takes the
 * library's own path instead of breaking).
 */
import type { Socket as UdpSocket, RemoteInfo } from 'node:dgram';
import type { QUICConfig, QUICConnection, QUICSocket, QUICStream, native } from '@matrixai/quic';

export type NativeConnection = native.Connection;
export type RecvInfo = native.RecvInfo;

/** A QUICConnection's fields and methods that its typings mark internal or protected. */
export interface ConnectionInternals {
  readonly type: 'client' | 'server';
  /** The native quiche connection. */
  readonly conn: NativeConnection;
  config: QUICConfig;
  /** Serialises `recv()` calls (an async-locks Lock: `withF` is all `recv()` uses). */
  recvLock: { withF<T>(f: () => Promise<T>): Promise<T> };
  /** Streams the library made (peer streams it saw, streams made by `newStream`). */
  readonly streamMap: Map<number, QUICStream>;
  /** True once TLS finished and the verify callback accepted the peer. */
  readonly secureEstablished: boolean;
  /** Marks the connection verified: `start()` resolves. */
  resolveSecureEstablishedP(): void;
  /** CA certificates (DER) handed to the verify callback. */
  readonly caDERs: Uint8Array[] | undefined;
  _remoteHost: string;
  _remotePort: number;
  resolveClosedP(): void;
  send(): Promise<void>;
  recv(data: Uint8Array, remoteInfo: { host: string; port: number }): Promise<void>;
  /** Hands quiche's readable and writable streams to their QUICStreams (creating peer ones). */
  processStreams(): void;
  /** Re-arms quiche's timer after a send. */
  setConnTimeoutTimer(): void;
  dispatchEvent(event: Event): boolean;
}

/** The library's connection map (keyed by QUICConnectionId, compared by its hex text). */
export interface ConnectionMapInternals {
  readonly size: number;
  get(id: unknown): QUICConnection | undefined;
  set(id: unknown, connection: QUICConnection): unknown;
  delete(id: unknown): boolean;
}

/** A QUICSocket's internals. */
export interface SocketInternals {
  readonly connectionMap: ConnectionMapInternals;
  /** The UDP 'message' listener (registered by `start()`). */
  handleSocketMessage: (data: Buffer, remoteInfo: RemoteInfo) => Promise<void>;
  /** The UDP socket, once started. */
  readonly socket: UdpSocket | undefined;
}

export function connectionInternals(quic: QUICConnection): ConnectionInternals {
  return quic as unknown as ConnectionInternals;
}

export function socketInternals(socket: QUICSocket): SocketInternals {
  return socket as unknown as SocketInternals;
}

/** The `detail` of a library event (every @matrixai/events event carries one). */
export function detailOf<T = unknown>(event: Event): T {
  return (event as Event & { detail: T }).detail;
}

/** Members of a native connection the native stream path uses. */
const NATIVE_METHODS = [
  'send',
  'recv',
  'streamSend',
  'streamRecv',
  'streamCapacity',
  'streamShutdown',
  'readable',
  'peerStreamsLeftBidi',
  'timeout',
  'onTimeout',
  'isClosed',
  'isDraining',
  'isTimedOut',
  'isEstablished',
  'peerError',
  'localError',
  'peerCertChain',
  'close',
  'sourceId',
] as const;

/** Names of what `native` lacks (empty when it has the shape). */
export function nativeShape(native: unknown): string[] {
  if (native === null || typeof native !== 'object') return ['native connection'];
  const record = native as Record<string, unknown>;
  return NATIVE_METHODS.filter((name) => typeof record[name] !== 'function').map((name) => `native ${name}()`);
}

/** Names of what a QUICConnection lacks for the native path (empty when it has the shape). */
export function connectionShape(quic: QUICConnection): string[] {
  const c = connectionInternals(quic) as unknown as Record<string, unknown>;
  const missing: string[] = [];
  for (const name of ['send', 'recv', 'processStreams', 'setConnTimeoutTimer', 'resolveClosedP', 'resolveSecureEstablishedP', 'dispatchEvent']) {
    if (typeof c[name] !== 'function') missing.push(`connection ${name}()`);
  }
  if (typeof (c.recvLock as { withF?: unknown } | undefined)?.withF !== 'function') missing.push('connection recvLock');
  if (!(c.streamMap instanceof Map)) missing.push('connection streamMap');
  if (typeof c.secureEstablished !== 'boolean') missing.push('connection secureEstablished');
  if (c.type !== 'client' && c.type !== 'server') missing.push('connection type');
  if (typeof c.config !== 'object' || c.config === null) missing.push('connection config');
  missing.push(...nativeShape(c.conn));
  return missing;
}

/** Names of what a QUICSocket lacks (empty when it has the shape). */
export function socketShape(socket: QUICSocket): string[] {
  const s = socketInternals(socket);
  const missing: string[] = [];
  if (typeof s.handleSocketMessage !== 'function') missing.push('socket handleSocketMessage');
  const map = s.connectionMap as Partial<ConnectionMapInternals> | undefined;
  for (const name of ['get', 'set', 'delete'] as const) {
    if (typeof map?.[name] !== 'function') missing.push(`socket connectionMap.${name}()`);
  }
  return missing;
}
