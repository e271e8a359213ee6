/**
 * The startup probe: before the adapter relies on the library's internals
 * and on how quiche answers, it checks both, once per process, without any
 * I/O:
 *
 * - shapes: a QUICSocket and a QUICConnection (built, never started) have
 *   the members `internals.ts` names;
 * - behaviour: the QUICConnection's native quiche connection handshakes with
 *   a second one in memory (datagrams handed across by the probe), and
 *   quiche answers as the native path expects (stream credit, a write with
 *   FIN, a reset, STOP_SENDING, a stream quiche collected, a close).
 *
 * Any failure sends every adapter of the process down the library's own path
 * (`library-stream.ts`), reported in `adapter.stats().seam` and once in the
 * adapter's log. The probe never throws.
 */
import { randomBytes } from 'node:crypto';
import { QUICConnection, QUICConnectionId, QUICSocket, native, type Host, type Port, type QUICConfig } from '@matrixai/quic';
import { buildQuicheConfig, clientDefault, serverDefault } from '@matrixai/quic/config.js';
import { quietLogger } from './connection-hooks.js';
import { connectionInternals, connectionShape, nativeShape, socketShape, type NativeConnection } from './internals.js';
import { quicheStreamError } from './native-stream.js';
import { LOOPBACK_DATAGRAM } from './socket.js';

export interface SeamProbe {
  /** Every check passed: the native path is used. */
  readonly ok: boolean;
  /** The checks that passed. */
  readonly passed: readonly string[];
  /** The checks that failed, each with what was found. */
  readonly failed: readonly string[];
  /** quiche sent datagrams larger than 1 350 bytes when both ends allowed it (used on loopback). */
  readonly largeDatagrams: boolean;
  /** How long the probe took, ms. */
  readonly ms: number;
}

/** What the probe exercises; the defaults are the library as installed (tests pass doctored ones). */
export interface ProbeTargets {
  readonly quiche: typeof native.quiche;
  readonly QUICConnection: typeof QUICConnection;
  readonly QUICSocket: typeof QUICSocket;
}

const LIBRARY: ProbeTargets = { quiche: native.quiche, QUICConnection, QUICSocket };

/** The PEMs of a TLS identity (a QuicIdentity is one). */
export interface ProbeKeys {
  readonly privateKeyPem: string;
  readonly certificatePem: string;
}

const silent = quietLogger();

const ALPN = 'peerline-probe';
const enc = new TextEncoder();

let cached: SeamProbe | undefined;

/** The probe's result for this process (run on first use). */
export function seamProbe(keys: ProbeKeys): SeamProbe {
  cached ??= probeSeam(keys);
  return cached;
}

/** Runs every check against `targets`. */
export function probeSeam(keys: ProbeKeys, targets: ProbeTargets = LIBRARY): SeamProbe {
  const started = performance.now();
  const passed: string[] = [];
  const failed: string[] = [];
  const check = (name: string, run: () => string | undefined): boolean => {
    let problem: string | undefined;
    try {
      problem = run();
    } catch (error) {
      problem = `threw ${error instanceof Error ? error.message : String(error)}`;
    }
    if (problem === undefined) passed.push(name);
    else failed.push(`${name}: ${problem}`);
    return problem === undefined;
  };
  let largeDatagrams = false;

  check('socket shape', () => missing(socketShape(new targets.QUICSocket({ logger: silent }))));

  let client: NativeConnection | undefined;
  const ok = check('connection shape', () => {
    const quic = new targets.QUICConnection({
      type: 'client',
      scid: new QUICConnectionId(randomBytes(native.quiche.MAX_CONN_ID_LEN)),
      // Only its host and port are read before start().
      socket: { host: '127.0.0.1', port: 1 } as unknown as QUICSocket,
      remoteInfo: { host: '127.0.0.1' as Host, port: 2 as Port },
      config: { ...clientDefault, ...sizes(), key: keys.privateKeyPem, cert: keys.certificatePem, verifyPeer: false, applicationProtos: [ALPN] },
      logger: silent,
    });
    const problem = missing(connectionShape(quic));
    if (problem === undefined) client = connectionInternals(quic).conn;
    return problem;
  });
  if (ok && client !== undefined) largeDatagrams = behaviour(client, keys, targets, check);
  return { ok: failed.length === 0, passed, failed, largeDatagrams, ms: performance.now() - started };
}

function missing(names: string[]): string | undefined {
  return names.length === 0 ? undefined : `missing ${names.join(', ')}`;
}

function sizes(): Partial<QUICConfig> {
  return { maxSendUdpPayloadSize: LOOPBACK_DATAGRAM, maxRecvUdpPayloadSize: LOOPBACK_DATAGRAM };
}

/** The quiche answers the native path relies on. Returns whether large datagrams went out. */
function behaviour(client: NativeConnection, keys: ProbeKeys, targets: ProbeTargets, check: (name: string, run: () => string | undefined) => boolean): boolean {
  const quiche = targets.quiche;
  const A = { host: '127.0.0.1', port: 1 };
  const B = { host: '127.0.0.1', port: 2 };
  let server: NativeConnection | undefined;
  const built = check('server connection', () => {
    const config = buildQuicheConfig({ ...serverDefault, ...sizes(), key: keys.privateKeyPem, cert: keys.certificatePem, verifyPeer: false, applicationProtos: [ALPN] } as QUICConfig);
    server = quiche.Connection.accept(randomBytes(quiche.MAX_CONN_ID_LEN), null, B, A, config) as NativeConnection;
    return missing(nativeShape(server));
  });
  if (!built || server === undefined) return false;
  const s = server;
  const buffer = new Uint8Array(65_536);
  let largest = 0;
  const pump = (from: NativeConnection, to: NativeConnection, fromHost: typeof A, toHost: typeof A): number => {
    let count = 0;
    for (let result = from.send(buffer); result !== null && count < 1_000; result = from.send(buffer)) {
      largest = Math.max(largest, result[0]);
      to.recv(buffer.subarray(0, result[0]), { from: fromHost, to: toHost });
      count++;
    }
    return count;
  };
  const settle = (): void => {
    for (let round = 0; round < 20; round++) if (pump(client, s, A, B) + pump(s, client, B, A) === 0) return;
  };

  if (!check('handshake', () => (settle(), client.isEstablished() && s.isEstablished() ? undefined : 'not established'))) return false;
  check('stream credit', () => {
    const before = client.peerStreamsLeftBidi();
    client.streamSend(0, new Uint8Array(0), false);
    const after = client.peerStreamsLeftBidi();
    return before === serverDefault.initialMaxStreamsBidi && after === before - 1 ? undefined : `credit ${before} then ${after}`;
  });
  check('write with FIN', () => {
    const sent = client.streamSend(0, enc.encode('probe'), true);
    settle();
    const readable = [...s.readable()];
    const got = s.streamRecv(0, buffer);
    if (sent !== 5 || !readable.includes(0) || got === null) return `sent ${String(sent)}, readable ${readable.join(',')}`;
    return got[0] === 5 && got[1] && new TextDecoder().decode(buffer.subarray(0, 5)) === 'probe' ? undefined : `read ${JSON.stringify(got)}`;
  });
  largest = 0;
  s.streamSend(0, new Uint8Array(40_000), false);
  pump(s, client, B, A);
  const large = largest > quiche.MAX_DATAGRAM_SIZE;
  check('reset', () => {
    client.streamSend(4, enc.encode('x'), false);
    settle();
    s.streamRecv(4, buffer);
    s.streamShutdown(4, quiche.Shutdown.Write, 9);
    settle();
    try {
      client.streamRecv(4, buffer);
    } catch (error) {
      const failure = quicheStreamError(error);
      return failure.kind === 'reset' && failure.code === 9 ? undefined : `read failed with ${String(error)}`;
    }
    return 'the reset stream still reads';
  });
  check('stop sending', () => {
    client.streamShutdown(0, quiche.Shutdown.Read, 7);
    // Only the STOP_SENDING across: with more, quiche would collect the stream (next check).
    pump(client, s, A, B);
    try {
      s.streamSend(0, new Uint8Array(10), false);
    } catch (error) {
      const failure = quicheStreamError(error);
      return failure.kind === 'stopped' && failure.code === 7 ? undefined : `write failed with ${String(error)}`;
    }
    return 'the stopped stream still writes';
  });
  check('collected stream', () => {
    settle();
    const sent = s.streamSend(0, new Uint8Array(10), false);
    try {
      s.streamCapacity(0);
    } catch (error) {
      return sent === null && quicheStreamError(error).kind === 'gone' ? undefined : `write gave ${String(sent)}, capacity failed with ${String(error)}`;
    }
    return 'the collected stream still has capacity';
  });
  check('timer', () => {
    const timeout = client.timeout();
    client.onTimeout();
    return timeout === null || typeof timeout === 'number' ? undefined : `timeout() gave ${String(timeout)}`;
  });
  check('close', () => {
    client.close(true, 11, enc.encode('probe done'));
    settle();
    const error = s.peerError();
    return error !== null && error.isApp && error.errorCode === 11 ? undefined : `peer error ${JSON.stringify(error)}`;
  });
  return large;
}
