/**
 * Two behaviours of @matrixai/quic 2.0.9's quiche 0.18 that shape peerline's
 * wire format (adapters/quic/wire.ts). Bare library on loopback, no peerline
 * in the path.
 *
 * 1. A FIN sent alone. C concurrent echo streams per round, the writer ends
 *    with `writer.close()` (the FIN goes alone once the data was sent) versus
 *    the last byte and the FIN in one quiche write. Counted: streams whose
 *    reader never sees the end within 3 s.
 * 2. Credit after the reader stops reading. 120 streams on one connection
 *    (credit: 100). The listener reads the header, answers with a byte and
 *    the FIN, then either cancels its reader (STOP_SENDING) or reads the
 *    opener's direction to its end; the opener reads the answer to its end,
 *    then resets its direction or ends it with a byte and the FIN. Counted:
 *    streams opened within 3 s (past 100 only if the listener gave credit
 *    back).
 *
 *   npx tsx bench/quic/library-behaviours.ts [--streams 150]
 */
import { QUICClient, QUICServer, QUICSocket, events as quicEvents, type QUICConnection, type QUICStream } from '@matrixai/quic';
import { int, numberArg, say } from '../common.js';
import { benchIdentity, clientCrypto, silentLogger } from './common.js';
import { createHmac } from 'node:crypto';

const STREAMS = numberArg('streams', 150);

const serverCrypto = {
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

function native(quic: QUICConnection): { streamSend(id: number, data: Uint8Array, fin: boolean): number | null } {
  return (quic as unknown as { conn: { streamSend(id: number, data: Uint8Array, fin: boolean): number | null } }).conn;
}

async function readToEnd(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
  for (;;) if ((await reader.read()).done) return;
}

interface Pair {
  readonly client: QUICConnection;
  close(): Promise<void>;
}

/** A listener and a client on their own sockets. `onStream` serves each stream the client opens. */
async function pair(onStream: (quic: QUICConnection, stream: QUICStream) => void, options: { maxStreams?: number } = {}): Promise<Pair> {
  const limits = options.maxStreams === undefined ? {} : { initialMaxStreamsBidi: options.maxStreams };
  const serverIdentity = await benchIdentity('costs-server');
  const serverSocket = new QUICSocket({ logger: silentLogger });
  await serverSocket.start({ host: '127.0.0.1', port: 0 });
  const server = new QUICServer({
    socket: serverSocket,
    logger: silentLogger,
    crypto: serverCrypto,
    config: { key: serverIdentity.privateKeyPem, cert: serverIdentity.certificatePem, verifyPeer: false, ...limits },
  });
  await server.start();
  server.addEventListener(quicEvents.EventQUICServerConnection.name, (event: Event) => {
    const quic = (event as unknown as { detail: QUICConnection }).detail;
    quic.addEventListener(quicEvents.EventQUICConnectionStream.name, (streamEvent: Event) => {
      const stream = (streamEvent as unknown as { detail: QUICStream }).detail;
      onStream(quic, stream);
    });
  });
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

/** Section 1: how many of `STREAMS` concurrent echo streams never see their end. */
async function loneFin(withByte: boolean): Promise<number> {
  const p = await pair((quic, stream) => {
    void (async () => {
      const reader = stream.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
      const writer = stream.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
      const chunks: Uint8Array[] = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
      }
      if (withByte) {
        native(quic).streamSend(stream.streamId, Buffer.concat(chunks), true);
      } else {
        await writer.write(Buffer.concat(chunks));
      }
      await writer.close();
    })().catch(() => {});
  }, { maxStreams: 10_000 });
  let hung = 0;
  for (let round = 0; round < 3; round++) {
    let ended = 0;
    const all = Promise.all(
      Array.from({ length: STREAMS }, async (_, i) => {
        const stream = p.client.newStream('bidi');
        const writer = stream.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
        const reader = stream.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
        if (withByte) {
          native(p.client).streamSend(stream.streamId, Uint8Array.of(i & 0xff), true);
        } else {
          await writer.write(Uint8Array.of(i & 0xff));
        }
        await writer.close();
        await readToEnd(reader);
        ended++;
      }),
    );
    await Promise.race([all, new Promise((resolve) => setTimeout(resolve, 3_000))]);
    hung += STREAMS - ended;
  }
  await p.close();
  return hung;
}

/** Section 2: streams opened within 3 s out of 120. */
async function creditAfter(listener: 'cancel' | 'read', opener: 'reset' | 'fin'): Promise<number> {
  const p = await pair((quic, stream) => {
    void (async () => {
      const reader = stream.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
      const writer = stream.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
      await reader.read();
      native(quic).streamSend(stream.streamId, Uint8Array.of(0x15), true);
      await writer.close();
      if (listener === 'cancel') await reader.cancel(new Error('done')).catch(() => {});
      else await readToEnd(reader);
    })().catch(() => {});
  });
  let opened = 0;
  const end = Date.now() + 3_000;
  while (opened < 120 && Date.now() < end) {
    const left = (p.client as unknown as { conn: { peerStreamsLeftBidi(): number } }).conn.peerStreamsLeftBidi();
    if (left === 0) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      continue;
    }
    const stream = p.client.newStream('bidi');
    opened++;
    const writer = stream.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
    const reader = stream.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    void (async () => {
      await writer.write(Uint8Array.of(1, 2, 3));
      await readToEnd(reader);
      if (opener === 'reset') {
        await writer.abort(new Error('done')).catch(() => {});
      } else {
        native(p.client).streamSend(stream.streamId, Uint8Array.of(0), true);
        await writer.close();
      }
    })().catch(() => {});
  }
  await p.close();
  return opened;
}

say(`@matrixai/quic 2.0.9 (quiche 0.18) on loopback`);
say(`1. ${STREAMS} concurrent echo streams x 3 rounds: streams whose reader never saw the end (3 s)`);
say(`   FIN alone (writer.close() after the data):  ${int(await loneFin(false))} of ${STREAMS * 3}`);
say(`   last byte and FIN in one write:              ${int(await loneFin(true))} of ${STREAMS * 3}`);
say('');
say('2. 120 streams on one connection with 100 streams of credit: streams opened within 3 s');
for (const listener of ['cancel', 'read'] as const) {
  for (const opener of ['reset', 'fin'] as const) {
    const label = `listener ${listener === 'cancel' ? 'cancels its reader' : 'reads to the end'}, opener ${opener === 'reset' ? 'resets' : 'ends with byte+FIN'}:`;
    say(`   ${label.padEnd(58)} ${await creditAfter(listener, opener)} of 120`);
  }
}
