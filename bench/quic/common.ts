/**
 * Shared parts of the QUIC benchmarks: a bare @matrixai/quic server and
 * client (the "raw" side every figure is compared with), identities, and
 * percentiles.
 */
import { createHmac, randomFillSync } from 'node:crypto';
import { QUICClient, QUICServer, QUICSocket, events as quicEvents, type QUICConnection, type QUICStream } from '@matrixai/quic';
import { createQuicAdapter, generateIdentity, type QuicAdapterOptions, type QuicIdentity } from '../../adapters/quic/index.js';
import { createEngine, type Engine, type EngineInit } from '../../runtime/index.js';
import { quietLogger } from '../common.js';

/** A logger for the library that drops everything (the library's default prints to stderr). */
export const silentLogger = (() => {
  const logger = { debug() {}, info() {}, warn() {}, error() {}, getChild: () => logger };
  return logger as unknown as NonNullable<ConstructorParameters<typeof QUICSocket>[0]['logger']>;
})();

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

export function sortedCopy(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

/** CPU time (user + system) of this process in ms since `start` (a process.cpuUsage() reading). */
export function cpuMsSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

const identities = new Map<string, Promise<QuicIdentity>>();
export function benchIdentity(name: string): Promise<QuicIdentity> {
  let found = identities.get(name);
  if (found === undefined) {
    found = generateIdentity();
    identities.set(name, found);
  }
  return found;
}

/**
 * The peerline side of the QUIC benchmarks: two engines on their own
 * adapters on loopback, both started (`serve` registers `b`'s handlers
 * first), `a` knowing `b`'s address; nothing connected yet. Both log nothing.
 */
export async function quicEnginePair(
  name: string,
  options: { readonly adapter?: Partial<Omit<QuicAdapterOptions, 'identity'>>; readonly engine?: EngineInit; readonly serve: (b: Engine) => void },
): Promise<{ a: Engine; b: Engine }> {
  const adapterA = createQuicAdapter({ identity: await benchIdentity(`${name}-a`), logger: quietLogger, ...options.adapter });
  const adapterB = createQuicAdapter({ identity: await benchIdentity(`${name}-b`), logger: quietLogger, ...options.adapter });
  const init = { logger: quietLogger, trace: false, ...options.engine };
  const a = createEngine({ adapter: adapterA, ...init });
  const b = createEngine({ adapter: adapterB, ...init });
  options.serve(b);
  await a.start();
  await b.start();
  a.addPeer(b.peerId, [adapterB.address]);
  return { a, b };
}

export const serverCrypto = {
  key: new Uint8Array(32).buffer as ArrayBuffer,
  ops: {
    sign: async (key: ArrayBuffer, data: ArrayBuffer) => {
      const mac = createHmac('sha256', Buffer.from(key)).update(Buffer.from(data)).digest();
      return mac.buffer.slice(mac.byteOffset, mac.byteOffset + mac.byteLength) as ArrayBuffer;
    },
    verify: async (key: ArrayBuffer, data: ArrayBuffer, signature: ArrayBuffer) =>
      createHmac('sha256', Buffer.from(key)).update(Buffer.from(data)).digest().equals(Buffer.from(signature)),
  },
};

export const clientCrypto = { ops: { randomBytes: async (data: ArrayBuffer) => void randomFillSync(new Uint8Array(data)) } };

/**
 * What the raw side does for each stream, the same steps as peerline's open:
 * the opener writes a header (kind, length, name), the acceptor reads it and
 * answers one ACK byte; then both directions end. Every direction ends with a
 * byte and the FIN in one write (the library's `close()` alone can lose the
 * FIN under load, see docs/PERFORMANCE.md), so the raw side is correct, not only fast.
 */
export const RAW_HEADER = Uint8Array.of(0x01, 0x00, 0x07, ...new TextEncoder().encode('bench/1'));

/** The connection's quiche handle, for writes the library's streams do not offer (data and FIN in one call). */
export function nativeOf(quic: QUICConnection): { streamSend(id: number, data: Uint8Array, fin: boolean): number | null } {
  return (quic as unknown as { conn: { streamSend(id: number, data: Uint8Array, fin: boolean): number | null } }).conn;
}

/** Ends a stream direction with one byte and the FIN, then records the close in the library. */
export async function endWithByte(quic: QUICConnection, stream: QUICStream, writer: WritableStreamDefaultWriter<Uint8Array>): Promise<void> {
  nativeOf(quic).streamSend(stream.streamId, Uint8Array.of(0), true);
  await writer.close();
}

/** Reads and drops everything until the stream's end. */
export async function readToEnd(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
  for (;;) if ((await reader.read()).done) return;
}

/** The raw acceptor: reads the bench header, answers one ACK byte, ends with a byte and the FIN, reads to the end. */
export function ackRawStream(quic: QUICConnection, stream: QUICStream): void {
  void (async () => {
    const reader = stream.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    const writer = stream.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
    let got = 0;
    while (got < RAW_HEADER.length) {
      const { done, value } = await reader.read();
      if (done) return;
      got += value.length;
    }
    await writer.write(Uint8Array.of(0x06));
    await endWithByte(quic, stream, writer);
    await readToEnd(reader);
  })().catch(() => {});
}

/** Calls `onStream` for every stream a remote opens on any connection the listener accepts. */
function serveRawStreams(server: QUICServer, onStream: (quic: QUICConnection, stream: QUICStream) => void): void {
  server.addEventListener(quicEvents.EventQUICServerConnection.name, (event: Event) => {
    const quic = (event as unknown as { detail: QUICConnection }).detail;
    quic.addEventListener(quicEvents.EventQUICConnectionStream.name, (streamEvent: Event) => {
      const stream = (streamEvent as unknown as { detail: QUICStream }).detail;
      onStream(quic, stream);
    });
  });
}

export interface RawServer {
  readonly port: number;
  close(): Promise<void>;
}

/** A bare @matrixai/quic listener answering the bench header with one ACK byte. */
export async function rawServer(identity: QuicIdentity, options: { verifyPeer?: boolean } = {}): Promise<RawServer> {
  const socket = new QUICSocket({ logger: silentLogger });
  await socket.start({ host: '127.0.0.1', port: 0 });
  const server = new QUICServer({
    socket,
    logger: silentLogger,
    crypto: serverCrypto,
    config: {
      key: identity.privateKeyPem,
      cert: identity.certificatePem,
      verifyPeer: options.verifyPeer === true,
      ...(options.verifyPeer === true ? { verifyCallback: async () => undefined } : {}),
      applicationProtos: ['peerline/1'],
    },
  });
  await server.start();
  serveRawStreams(server, ackRawStream);
  return {
    port: socket.port,
    async close() {
      await server.stop({ force: true }).catch(() => {});
      await socket.stop({ force: true }).catch(() => {});
    },
  };
}

export interface RawClient {
  readonly socket: QUICSocket;
  /** Opens a stream, sends the header, waits for the ACK; resolves with the ms that took. The stream then ends in the background. */
  open(): Promise<number>;
  close(): Promise<void>;
}

export async function rawClient(port: number, identity: QuicIdentity): Promise<RawClient> {
  const socket = new QUICSocket({ logger: silentLogger });
  await socket.start({ host: '127.0.0.1', port: 0 });
  const client = await QUICClient.createQUICClient(
    {
      host: '127.0.0.1',
      port,
      socket,
      logger: silentLogger,
      crypto: clientCrypto,
      config: { key: identity.privateKeyPem, cert: identity.certificatePem, verifyPeer: false, applicationProtos: ['peerline/1'] },
    },
    { timer: 5_000 },
  );
  const quic = client.connection;
  return {
    socket,
    async open() {
      const started = performance.now();
      const stream = quic.newStream('bidi');
      const writer = stream.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
      const reader = stream.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
      await writer.write(RAW_HEADER);
      const { value } = await reader.read();
      const took = performance.now() - started;
      if (value?.[0] !== 0x06) throw new Error('no ACK');
      void (async () => {
        await endWithByte(quic, stream, writer);
        await readToEnd(reader);
      })().catch(() => {});
      return took;
    },
    async close() {
      await client.destroy({ force: true }).catch(() => {});
      await socket.stop({ force: true }).catch(() => {});
    },
  };
}

export interface RawPair {
  readonly client: QUICConnection;
  close(): Promise<void>;
}

/** A bare @matrixai/quic listener and client on their own sockets, as the library comes. `onStream` serves each stream the client opens. */
export async function rawPair(onStream: (quic: QUICConnection, stream: QUICStream) => void, options: { maxStreams?: number } = {}): Promise<RawPair> {
  const limits = options.maxStreams === undefined ? {} : { initialMaxStreamsBidi: options.maxStreams };
  const serverIdentity = await benchIdentity('raw-pair-server');
  const serverSocket = new QUICSocket({ logger: silentLogger });
  await serverSocket.start({ host: '127.0.0.1', port: 0 });
  const server = new QUICServer({
    socket: serverSocket,
    logger: silentLogger,
    crypto: serverCrypto,
    config: { key: serverIdentity.privateKeyPem, cert: serverIdentity.certificatePem, verifyPeer: false, ...limits },
  });
  await server.start();
  serveRawStreams(server, onStream);
  const clientSocket = new QUICSocket({ logger: silentLogger });
  await clientSocket.start({ host: '127.0.0.1', port: 0 });
  const client = await QUICClient.createQUICClient(
    { host: '127.0.0.1', port: serverSocket.port, socket: clientSocket, logger: silentLogger, crypto: clientCrypto, config: { verifyPeer: false, ...limits } },
    { timer: 5_000 },
  );
  return {
    client: client.connection,
    async close() {
      await client.destroy({ force: true }).catch(() => {});
      await server.stop({ force: true }).catch(() => {});
      await clientSocket.stop({ force: true }).catch(() => {});
      await serverSocket.stop({ force: true }).catch(() => {});
    },
  };
}
