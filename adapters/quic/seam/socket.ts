/**
 * The adapter's one QUICSocket, as the seam uses it:
 *
 * - its UDP message handler is wrapped before `start()` registers it: the
 *   library re-throws what it does not expect from it (an unhandled
 *   rejection), and short-header datagrams of started connections on the
 *   native path go straight to them (`NativePath.receive`);
 * - its connection map is hooked: every connection the library registers
 *   (client or server side, before its handshake) is reported, so that it
 *   can be guarded, given its path, and pass admission control;
 * - the UDP socket gets an 'error' listener (the library has none, and an
 *   unlistened 'error' throws) and larger kernel buffers: a burst of large
 *   datagrams on loopback overflows the default 208 KB and QUIC reads the
 *   loss as congestion;
 * - it sends the native path's datagrams;
 * - a UDP socket the library failed to bind is closed (it leaves it open).
 */
import type { Socket as UdpSocket } from 'node:dgram';
import { errors as quicErrors, native, type QUICConnection, type QUICSocket } from '@matrixai/quic';
import { socketInternals, socketShape, type SocketInternals } from './internals.js';
import type { DatagramSink, NativePath } from './native-connection.js';

/** Kernel buffer size asked for each direction (Linux caps it at net.core.rmem_max / wmem_max). */
const SOCKET_BUFFER = 4 * 1024 * 1024;

/**
 * Largest UDP payload on a loopback path: it fits the smallest common
 * loopback MTU (16 384 on macOS; 65 536 on Linux) with IPv6 and UDP headers.
 * quiche 0.18 caps a packet at 16 383 bytes anyway.
 */
export const LOOPBACK_DATAGRAM = 16_384 - 48;

/** Datagrams are sent in copies cut from slabs of this size (one allocation per slab, not per packet). */
const SLAB = 256 * 1024;

/** True for 127.0.0.0/8 and ::1 (with or without brackets). */
export function isLoopback(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return bare === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare) || bare === '::ffff:127.0.0.1';
}

/**
 * The UDP payload sizes for a connection to `host`: large on loopback (far
 * fewer packets per byte), quiche's default elsewhere (a datagram that must
 * not be fragmented on a 1500-byte path).
 */
export function datagramSizes(host: string): { maxSendUdpPayloadSize: number; maxRecvUdpPayloadSize: number } {
  const size = isLoopback(host) ? LOOPBACK_DATAGRAM : native.quiche.MAX_DATAGRAM_SIZE;
  return { maxSendUdpPayloadSize: size, maxRecvUdpPayloadSize: size };
}

export interface SocketHooks {
  /** A connection the library just registered (before its handshake). */
  registered(quic: QUICConnection): void;
  /** A registered connection the library forgot. */
  unregistered(quic: QUICConnection): void;
  /** Something failed in the socket's handling (logged and counted by the adapter). */
  failed(where: string, error: unknown): void;
  /** The UDP socket reported an error (the first of each code is worth a line). */
  udpError(error: unknown): void;
}

const done = Promise.resolve();
/** Connection ids peerline's connections use (the library's length for the ids it makes). */
const CID_LENGTH = native.quiche.MAX_CONN_ID_LEN;

export class SocketPath implements DatagramSink {
  readonly #s: SocketInternals;
  readonly #hooks: SocketHooks;
  readonly #routes = new Map<string, NativePath>();
  /** Whether registrations are reported (the connection map had the shape). */
  readonly hooked: boolean;
  #udp: UdpSocket | undefined;
  #slab = new Uint8Array(SLAB);
  #slabUsed = 0;

  constructor(socket: QUICSocket, hooks: SocketHooks) {
    this.#s = socketInternals(socket);
    this.#hooks = hooks;
    const missing = socketShape(socket);
    this.#wrapMessages();
    this.hooked = missing.length === 0 && this.#hookMap();
  }

  /** Connections the library holds, whatever their state. */
  get libraryConnections(): number {
    const size = this.#s.connectionMap?.size;
    return typeof size === 'number' ? size : 0;
  }

  /** After the socket started: its UDP socket's listener and buffers. */
  started(): void {
    const udp = this.#s.socket;
    if (udp === undefined || typeof udp.on !== 'function') return;
    this.#udp = udp;
    udp.on('error', (error) => this.#hooks.udpError(error));
    try {
      udp.setRecvBufferSize(SOCKET_BUFFER);
      udp.setSendBufferSize(SOCKET_BUFFER);
    } catch {
      // The defaults then; slower on loopback, not wrong.
    }
  }

  /**
   * After `start()` failed (the port is taken): @matrixai/quic 2.0.9 leaves
   * the UDP socket it created, unbound, open, and `stop()` refuses a socket
   * that never started, so every failed bind would keep a handle for good.
   * Closes it.
   */
  failedToStart(): Promise<void> {
    const udp = this.#s.socket;
    if (udp === undefined || typeof udp.close !== 'function') return done;
    return new Promise((resolve) => {
      try {
        udp.close(() => resolve());
      } catch {
        // Already closed.
        resolve();
      }
    });
  }

  // DatagramSink

  send(buffer: Uint8Array, length: number, port: number, host: string): void {
    const udp = this.#udp;
    if (udp === undefined) return;
    if (this.#slabUsed + length > SLAB) {
      this.#slab = new Uint8Array(SLAB);
      this.#slabUsed = 0;
    }
    const offset = this.#slabUsed;
    this.#slab.set(buffer.subarray(0, length), offset);
    this.#slabUsed += length;
    try {
      udp.send(Buffer.from(this.#slab.buffer, offset, length), port, host);
    } catch (error) {
      // The socket is closing (our own close): nothing more goes out, and nothing is wrong.
      if ((error as { code?: unknown }).code !== 'ERR_SOCKET_DGRAM_NOT_RUNNING') this.#hooks.udpError(error);
    }
  }

  route(key: string, path: NativePath | undefined): void {
    if (path === undefined) this.#routes.delete(key);
    else this.#routes.set(key, path);
  }

  // --------------------------------------------------------------- hooks

  #wrapMessages(): void {
    const original = this.#s.handleSocketMessage;
    if (typeof original !== 'function') return;
    const routes = this.#routes;
    const hooks = this.#hooks;
    this.#s.handleSocketMessage = (data, remote) => {
      // A short header (first bit 0) starts with the destination connection id.
      if (routes.size > 0 && (data[0]! & 0x80) === 0 && data.length > CID_LENGTH) {
        const path = routes.get(data.toString('latin1', 1, 1 + CID_LENGTH));
        if (path !== undefined) {
          try {
            path.receive(data, remote.address, remote.port);
          } catch (error) {
            hooks.failed('datagram', error);
          }
          return done;
        }
      }
      return original(data, remote).catch((error: unknown) => {
        // A datagram still being handled while the socket or its connection
        // stops (our own close): nothing is wrong, there is just no one left.
        if (error instanceof quicErrors.ErrorQUICSocketNotRunning || error instanceof quicErrors.ErrorQUICConnectionNotRunning) return;
        hooks.failed('socket message', error);
      });
    };
  }

  #hookMap(): boolean {
    const map = this.#s.connectionMap;
    const set = map.set;
    const remove = map.delete;
    const get = map.get;
    const hooks = this.#hooks;
    const seen = new WeakSet<QUICConnection>();
    map.set = (id: unknown, quic: QUICConnection) => {
      const fresh = !seen.has(quic);
      if (fresh) seen.add(quic);
      const result = set.call(map, id, quic);
      if (fresh) {
        try {
          hooks.registered(quic);
        } catch (error) {
          hooks.failed('connection registration', error);
        }
      }
      return result;
    };
    map.delete = (id: unknown) => {
      const quic = get.call(map, id);
      const result = remove.call(map, id);
      if (quic !== undefined) {
        try {
          hooks.unregistered(quic);
        } catch (error) {
          hooks.failed('connection unregistration', error);
        }
      }
      return result;
    };
    return true;
  }
}
