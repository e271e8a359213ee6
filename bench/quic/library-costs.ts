/**
 * Where the time of a QUIC stream open goes in @matrixai/quic 2.0.9, and two
 * behaviours of its quiche 0.18 that shape peerline's wire format. Bare
 * library on loopback, no peerline in the path.
 *
 * 1. Cost steps. The raw open of stream-open.ts (header, one ACK byte, both
 *    directions end with a byte and the FIN), with peerline's replacements
 *    (adapters/quic/tuning.ts) added one by one. Per step: p50/p90 latency of
 *    sequential opens, process CPU ms per open (both ends in this process)
 *    and UDP datagrams per open (both directions). Steps take turns in
 *    rotating order, round after round, each on its own connection.
 * 2. A FIN sent alone. C concurrent echo streams per round, the writer ends
 *    with `writer.close()` (the FIN goes alone once the data was sent) versus
 *    the last byte and the FIN in one quiche write. Counted: streams whose
 *    reader never sees the end within 3 s.
 * 3. Credit after the reader stops reading. 120 streams on one connection
 *    (credit: 100). The listener reads the header, answers with a byte and
 *    the FIN, then either cancels its reader (STOP_SENDING) or reads the
 *    opener's direction to its end; the opener reads the answer to its end,
 *    then resets its direction or ends it with a byte and the FIN. Counted:
 *    streams opened within 3 s (past 100 only if the listener gave credit
 *    back).
 *
 *   npx tsx bench/quic/library-costs.ts [--rounds 6] [--batch 40] [--streams 150]
 */
import { QUICClient, QUICServer, QUICSocket, events as quicEvents, type QUICConnection, type QUICStream } from '@matrixai/quic';
import { int, numberArg, say } from '../common.js';
import { tuneConnection, tuneStream, untangleClient, untangleServerConnection, untangleStream, type ConnectionTuning } from '../../adapters/quic/tuning.js';
import { RAW_HEADER, ackRawStream, benchIdentity, clientCrypto, cpuMsSince, percentile, silentLogger, sortedCopy } from './common.js';
import { createHmac } from 'node:crypto';

const ROUNDS = numberArg('rounds', 6);
const BATCH = numberArg('batch', 40);
const STREAMS = numberArg('streams', 150);

interface Step extends ConnectionTuning {
  readonly name: string;
  readonly untangle: boolean;
  readonly streamLock: boolean;
}

const STEPS: Step[] = [
  { name: 'stock library', lock: false, timer: false, cork: false, untangle: false, streamLock: false },
  { name: '+ recv lock', lock: true, timer: false, cork: false, untangle: false, streamLock: false },
  { name: '+ timer', lock: true, timer: true, cork: false, untangle: false, streamLock: false },
  { name: '+ no event clones', lock: true, timer: true, cork: false, untangle: true, streamLock: false },
  { name: '+ corked send', lock: true, timer: true, cork: true, untangle: true, streamLock: false },
  { name: '+ stream lock (all)', lock: true, timer: true, cork: true, untangle: true, streamLock: true },
];

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
  datagrams: number;
  close(): Promise<void>;
}

/**
 * A listener and a client on their own sockets. `onStream` serves each
 * stream the client opens. Every connection counts its datagrams.
 */
async function pair(step: Step | undefined, onStream: (quic: QUICConnection, stream: QUICStream) => void, options: { maxStreams?: number } = {}): Promise<Pair> {
  const counted = { datagrams: 0 };
  const hook = (socket: QUICSocket): void => {
    const map = (socket as unknown as { connectionMap: { set(...args: unknown[]): unknown } }).connectionMap;
    const set = map.set.bind(map);
    map.set = (...args: unknown[]) => {
      const quic = args[1] as QUICConnection;
      if (step !== undefined) tuneConnection(quic, () => {}, step);
      quic.addEventListener(quicEvents.EventQUICConnectionSend.name, () => void counted.datagrams++);
      return set(...args);
    };
  };
  const limits = options.maxStreams === undefined ? {} : { initialMaxStreamsBidi: options.maxStreams };
  const serverIdentity = await benchIdentity('costs-server');
  const serverSocket = new QUICSocket({ logger: silentLogger });
  await serverSocket.start({ host: '127.0.0.1', port: 0 });
  hook(serverSocket);
  const server = new QUICServer({
    socket: serverSocket,
    logger: silentLogger,
    crypto: serverCrypto,
    config: { key: serverIdentity.privateKeyPem, cert: serverIdentity.certificatePem, verifyPeer: false, ...limits },
  });
  await server.start();
  server.addEventListener(quicEvents.EventQUICServerConnection.name, (event: Event) => {
    const quic = (event as unknown as { detail: QUICConnection }).detail;
    if (step?.untangle === true) untangleServerConnection(server, quic);
    quic.addEventListener(quicEvents.EventQUICConnectionStream.name, (streamEvent: Event) => {
      const stream = (streamEvent as unknown as { detail: QUICStream }).detail;
      if (step?.untangle === true) untangleStream(quic, stream);
      if (step?.streamLock === true) tuneStream(stream);
      onStream(quic, stream);
    });
  });
  const clientSocket = new QUICSocket({ logger: silentLogger });
  await clientSocket.start({ host: '127.0.0.1', port: 0 });
  hook(clientSocket);
  const client = await QUICClient.createQUICClient(
    { host: '127.0.0.1', port: serverSocket.port, socket: clientSocket, logger: silentLogger, crypto: clientCrypto, config: { verifyPeer: false, ...limits } },
    { timer: 5_000 },
  );
  if (step?.untangle === true) untangleClient(client);
  return {
    client: client.connection,
    get datagrams() {
      return counted.datagrams;
    },
    set datagrams(n: number) {
      counted.datagrams = n;
    },
    async close() {
      await client.destroy({ force: true }).catch(() => {});
      await server.stop({ force: true }).catch(() => {});
      await clientSocket.stop({ force: true }).catch(() => {});
      await serverSocket.stop({ force: true }).catch(() => {});
    },
  };
}

/** The acceptor of section 1 is the raw acceptor of common.ts. */
const ackServer = ackRawStream;

async function openOnce(p: Pair, step: Step): Promise<number> {
  const started = performance.now();
  const stream = p.client.newStream('bidi');
  if (step.untangle) untangleStream(p.client, stream);
  if (step.streamLock) tuneStream(stream);
  const writer = stream.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
  const reader = stream.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
  await writer.write(RAW_HEADER);
  await reader.read();
  const took = performance.now() - started;
  void (async () => {
    native(p.client).streamSend(stream.streamId, Uint8Array.of(0), true);
    await writer.close();
    await readToEnd(reader);
  })().catch(() => {});
  return took;
}

async function costSteps(): Promise<void> {
  say(`1. cost of one stream open (header + ACK + both ends), ${ROUNDS} rounds x ${BATCH} sequential opens per step`);
  const pairs = new Map<string, Pair>();
  for (const step of STEPS) {
    const p = await pair(step, ackServer);
    for (let i = 0; i < 20; i++) await openOnce(p, step);
    pairs.set(step.name, p);
  }
  const tally = new Map(STEPS.map((s) => [s.name, { latencies: [] as number[], cpu: 0, datagrams: 0, opens: 0 }]));
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < STEPS.length; i++) {
      const step = STEPS[(i + round) % STEPS.length]!;
      const p = pairs.get(step.name)!;
      const t = tally.get(step.name)!;
      // Let the previous batch's stream ends settle first.
      await new Promise((resolve) => setTimeout(resolve, 20));
      p.datagrams = 0;
      const cpu = process.cpuUsage();
      for (let k = 0; k < BATCH; k++) t.latencies.push(await openOnce(p, step));
      await new Promise((resolve) => setTimeout(resolve, 20));
      t.cpu += cpuMsSince(cpu);
      t.datagrams += p.datagrams;
      t.opens += BATCH;
    }
  }
  say('step                    p50 ms   p90 ms   CPU ms/open   datagrams/open');
  for (const step of STEPS) {
    const t = tally.get(step.name)!;
    const sorted = sortedCopy(t.latencies);
    say(
      `${step.name.padEnd(22)} ${percentile(sorted, 0.5).toFixed(2).padStart(7)} ${percentile(sorted, 0.9).toFixed(2).padStart(8)} ${(t.cpu / t.opens).toFixed(2).padStart(13)} ${(t.datagrams / t.opens).toFixed(1).padStart(16)}`,
    );
  }
  for (const p of pairs.values()) await p.close();
}

/** Section 2: how many of `STREAMS` concurrent echo streams never see their end. */
async function loneFin(withByte: boolean): Promise<number> {
  const p = await pair(undefined, (quic, stream) => {
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

/** Section 3: streams opened within 3 s out of 120. */
async function creditAfter(listener: 'cancel' | 'read', opener: 'reset' | 'fin'): Promise<number> {
  const p = await pair(undefined, (quic, stream) => {
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
await costSteps();
say('');
say(`2. ${STREAMS} concurrent echo streams x 3 rounds: streams whose reader never saw the end (3 s)`);
say(`   FIN alone (writer.close() after the data):  ${int(await loneFin(false))} of ${STREAMS * 3}`);
say(`   last byte and FIN in one write:              ${int(await loneFin(true))} of ${STREAMS * 3}`);
say('');
say('3. 120 streams on one connection with 100 streams of credit: streams opened within 3 s');
for (const listener of ['cancel', 'read'] as const) {
  for (const opener of ['reset', 'fin'] as const) {
    const label = `listener ${listener === 'cancel' ? 'cancels its reader' : 'reads to the end'}, opener ${opener === 'reset' ? 'resets' : 'ends with byte+FIN'}:`;
    say(`   ${label.padEnd(58)} ${await creditAfter(listener, opener)} of 120`);
  }
}
