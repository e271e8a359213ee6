/**
 * Bulk throughput over QUIC on loopback, side by side in one run:
 *
 *   peerline       engine A writes M MiB in 64 KiB chunks on `openStream`,
 *                  engine B's handler reads to the end and answers one byte.
 *                  The adapter as it comes (native path, loopback datagrams).
 *   peerline-1350  the same with 1 350-byte datagrams (quiche's default, what
 *                  a path with a 1 500-byte MTU allows): the per-packet cost.
 *   raw            @matrixai/quic as it comes: a client stream writes the same
 *                  chunks, the server's stream reads to the end (no engine, no
 *                  framing, the library's own streams and defaults).
 *   dgram          the floor: a Node UDP socket sends the same bytes in
 *                  datagrams of peerline's loopback size to another socket in
 *                  this process, at most 1 MiB in flight (counted by what the
 *                  receiver got), no loss allowed; and again in 1 350-byte
 *                  datagrams.
 *
 * Each is measured with one stream and with P parallel streams (one
 * connection; the M MiB split evenly). Time from the first write to the last
 * byte received (the answer for peerline). Every round runs each
 * configuration once, in a rotating order; reported: the median MiB/s over
 * rounds, process CPU ms per MiB (both ends are in this process), and the
 * ratios peerline / raw and peerline / dgram. The raw library is slow; it
 * moves `--raw-mb` MiB (rates are per byte, so the sizes compare).
 *
 *   npx tsx bench/quic/throughput.ts [--mb 64] [--raw-mb 8] [--rounds 3] [--parallel 8]
 */
import dgram from 'node:dgram';
import { LOOPBACK_DATAGRAM } from '../../adapters/quic/seam/index.js';
import type { PeerStream } from '../../runtime/index.js';
import { RESULT_PREFIX, median, numberArg, say } from '../common.js';
import { cpuMsSince, quicEnginePair, rawPair } from './common.js';

const MB = numberArg('mb', 64);
const RAW_MB = numberArg('raw-mb', 8);
const ROUNDS = numberArg('rounds', 3);
const PARALLEL = numberArg('parallel', 8);
const CHUNK = 64 * 1024;
const MIB = 1024 * 1024;

interface Subject {
  readonly name: string;
  readonly mib: number;
  /** Moves `bytes` over `streams` streams; resolves once all of it arrived. */
  run(bytes: number, streams: number): Promise<void>;
  close(): Promise<void>;
}

const payload = new Uint8Array(CHUNK).fill(0x5a);

async function writeAll(writer: WritableStreamDefaultWriter<Uint8Array>, bytes: number): Promise<void> {
  for (let sent = 0; sent < bytes; sent += CHUNK) await writer.write(sent + CHUNK <= bytes ? payload : payload.subarray(0, bytes - sent));
}

async function peerline(name: string, quicConfig: { maxSendUdpPayloadSize?: number; maxRecvUdpPayloadSize?: number }): Promise<Subject> {
  let received = 0;
  const sink = async (stream: PeerStream): Promise<void> => {
    const reader = stream.readable.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.length;
    }
    const writer = stream.writable.getWriter();
    await writer.write(Uint8Array.of(1));
    await writer.close();
  };
  const { a, b } = await quicEnginePair(name, {
    adapter: { quicConfig },
    engine: { drainDeadlineMs: 500, forceCloseGraceMs: 500 },
    serve: (b) => b.handle('sink/1', sink),
  });
  const one = async (bytes: number): Promise<void> => {
    const stream = await a.openStream(b.peerId, 'sink/1');
    const writer = stream.writable.getWriter();
    await writeAll(writer, bytes);
    await writer.close();
    const answer = await stream.readable.getReader().read();
    if (answer.value?.[0] !== 1) throw new Error(`${name}: no answer`);
  };
  await one(CHUNK); // connected and warm
  return {
    name,
    mib: MB,
    async run(bytes, streams) {
      received = 0;
      await Promise.all(Array.from({ length: streams }, () => one(bytes / streams)));
      if (received !== bytes) throw new Error(`${name}: ${received} of ${bytes} bytes arrived`);
    },
    async close() {
      await Promise.all([a.stop({ force: true }), b.stop({ force: true })]);
    },
  };
}

async function raw(): Promise<Subject> {
  let received = 0;
  const ends = new Set<() => void>();
  const pair = await rawPair((_quic, stream) => {
    void (async () => {
      const reader = stream.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        received += value.length;
      }
      for (const end of ends) end();
    })().catch(() => {});
  });
  return {
    name: 'raw',
    mib: RAW_MB,
    async run(bytes, streams) {
      received = 0;
      const all = new Promise<void>((resolve) => {
        const end = (): void => {
          if (received < bytes) return;
          ends.delete(end);
          resolve();
        };
        ends.add(end);
      });
      await Promise.all(
        Array.from({ length: streams }, async () => {
          const stream = pair.client.newStream('bidi');
          const writer = stream.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
          await writeAll(writer, bytes / streams);
          await writer.close();
        }),
      );
      await all;
    },
    close: () => pair.close(),
  };
}

async function blast(name: string, size: number): Promise<Subject> {
  const from = dgram.createSocket('udp4');
  const to = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => from.bind(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => to.bind(0, '127.0.0.1', resolve));
  // The same kernel buffers peerline asks for (adapters/quic/seam/socket.ts).
  for (const socket of [from, to]) {
    try {
      socket.setRecvBufferSize(4 * MIB);
      socket.setSendBufferSize(4 * MIB);
    } catch {
      // The defaults then.
    }
  }
  const port = to.address().port;
  const datagram = Buffer.alloc(size, 0x5a);
  let received = 0;
  let wake: (() => void) | undefined;
  to.on('message', (message) => {
    received += message.length;
    wake?.();
  });
  return {
    name,
    mib: MB,
    async run(bytes) {
      received = 0;
      let sent = 0;
      while (received < bytes) {
        // At most 1 MiB in flight: the receiver's buffer never overflows, nothing is lost.
        while (sent < bytes && sent - received < MIB) {
          const length = Math.min(size, bytes - sent);
          from.send(length === size ? datagram : datagram.subarray(0, length), port, '127.0.0.1');
          sent += length;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
          setImmediate(resolve);
        });
      }
      wake = undefined;
    },
    async close() {
      from.close();
      to.close();
    },
  };
}

interface Tally {
  rates: number[];
  cpuPerMib: number[];
}

export interface ThroughputReport {
  readonly mb: number;
  readonly parallel: number;
  /** Median MiB/s per configuration and stream count ('1' or 'P'). */
  readonly rates: Record<string, { single: number; parallel: number; cpuMsPerMib: number }>;
  readonly goals: { single: number; stretch: number; parallel: number };
}

async function main(): Promise<void> {
  say(`QUIC throughput on loopback: peerline ${MB} MiB, raw ${RAW_MB} MiB, in ${CHUNK / 1024} KiB writes; 1 and ${PARALLEL} streams; ${ROUNDS} rounds`);
  const subjects: Subject[] = [
    await peerline('peerline', {}),
    await peerline('peerline-1350', { maxSendUdpPayloadSize: 1_350, maxRecvUdpPayloadSize: 1_350 }),
    await raw(),
    await blast('dgram', LOOPBACK_DATAGRAM),
    await blast('dgram-1350', 1_350),
  ];
  const tallies = new Map<string, Tally>();
  for (const s of subjects) for (const k of [1, PARALLEL]) tallies.set(`${s.name}/${k}`, { rates: [], cpuPerMib: [] });
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < subjects.length; i++) {
      const subject = subjects[(i + round) % subjects.length]!;
      for (const streams of [1, PARALLEL]) {
        const bytes = subject.mib * MIB;
        const cpu = process.cpuUsage();
        const started = performance.now();
        await subject.run(bytes, streams);
        const ms = performance.now() - started;
        const tally = tallies.get(`${subject.name}/${streams}`)!;
        tally.rates.push(subject.mib / (ms / 1000));
        tally.cpuPerMib.push(cpuMsSince(cpu) / subject.mib);
      }
    }
    say(`  round ${round + 1}: ${subjects.map((s) => `${s.name} ${tallies.get(`${s.name}/1`)!.rates.at(-1)!.toFixed(1)} / ${tallies.get(`${s.name}/${PARALLEL}`)!.rates.at(-1)!.toFixed(1)}`).join(', ')} MiB/s (1 / ${PARALLEL} streams)`);
  }
  const rates: ThroughputReport['rates'] = {};
  say('');
  say(`configuration     1 stream MiB/s   ${PARALLEL} streams MiB/s   CPU ms per MiB (1 stream)`);
  for (const s of subjects) {
    const single = tallies.get(`${s.name}/1`)!;
    const parallel = tallies.get(`${s.name}/${PARALLEL}`)!;
    rates[s.name] = { single: median(single.rates), parallel: median(parallel.rates), cpuMsPerMib: median(single.cpuPerMib) };
    say(`${s.name.padEnd(16)} ${rates[s.name]!.single.toFixed(1).padStart(15)} ${rates[s.name]!.parallel.toFixed(1).padStart(18)} ${rates[s.name]!.cpuMsPerMib.toFixed(2).padStart(26)}`);
  }
  const pl = rates.peerline!;
  const small = rates['peerline-1350']!;
  const r = rates.raw!;
  const floor = rates.dgram!;
  const floorSmall = rates['dgram-1350']!;
  say('');
  say(`peerline / raw:        1 stream ${(pl.single / r.single).toFixed(1)}x, ${PARALLEL} streams ${(pl.parallel / r.parallel).toFixed(1)}x (higher is better)`);
  say(`peerline / dgram:      1 stream ${(pl.single / floor.single).toFixed(3)}, ${PARALLEL} streams ${(pl.parallel / floor.parallel).toFixed(3)} of the floor (${LOOPBACK_DATAGRAM}-byte datagrams)`);
  say(`peerline-1350 / raw:   1 stream ${(small.single / r.single).toFixed(1)}x; / dgram-1350 ${(small.single / floorSmall.single).toFixed(3)} of the floor (1 350-byte datagrams)`);
  const goals = { single: 50, stretch: 100, parallel: 80 };
  say(
    `goals: 1 stream >= ${goals.single} MiB/s (stretch ${goals.stretch}): ${pl.single >= goals.stretch ? 'MET (stretch)' : pl.single >= goals.single ? 'MET' : 'NOT MET'}; ` +
      `${PARALLEL} streams >= ${goals.parallel} MiB/s: ${pl.parallel >= goals.parallel ? 'MET' : 'NOT MET'}`,
  );
  for (const s of subjects) await s.close();
  const report: ThroughputReport = { mb: MB, parallel: PARALLEL, rates, goals };
  say(`${RESULT_PREFIX}${JSON.stringify(report)}`);
}

await main();
