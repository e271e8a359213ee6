/**
 * Stream open + header + ACK over QUIC on loopback: peerline against the bare
 * @matrixai/quic library doing the same steps, in one run.
 *
 *   raw                @matrixai/quic as it comes: the client opens a stream,
 *                      writes a 10-byte header, the server reads it and writes
 *                      one ACK byte; the latency is open() until the client
 *                      has read the ACK. Then both directions end (each with a
 *                      byte and the FIN, see common.ts).
 *   peerline           `engine.openStream(peer, 'bench/1')` until it resolves:
 *                      the engine, its machine, the QUIC adapter (credit
 *                      check, header, ACK), on the adapter's native path (the
 *                      default, adapters/quic/seam/). The handler closes the
 *                      stream; the opener closes it too.
 *   peerline-untuned   the same with `createQuicAdapter({ tuning: false })`:
 *                      the library's own path.
 *
 * Each round runs every configuration back to back, in a rotating order, on
 * its own connection (made before timing): B sequential opens (latency), then
 * C concurrent workers for T ms (streams per second). Reported: p50/p99 of
 * all sequential samples, the median over rounds of streams/s, CPU ms per
 * sequential open (process CPU time, both ends are in this process), and the
 * ratios peerline / raw. The machine may be shared: CPU per open is the
 * steadier figure when other processes compete for the cores.
 *
 *   npx tsx bench/quic/stream-open.ts [--rounds 8] [--batch 50] [--concurrency 16] [--window 1000]
 */
import { int, numberArg, say } from '../common.js';
import { benchIdentity, cpuMsSince, percentile, quicEnginePair, rawClient, rawServer, sortedCopy } from './common.js';

const ROUNDS = numberArg('rounds', 8);
const BATCH = numberArg('batch', 50);
const CONCURRENCY = numberArg('concurrency', 16);
const WINDOW_MS = numberArg('window', 1_000);

interface Subject {
  readonly name: string;
  /** One open; resolves with its latency in ms. */
  open(): Promise<number>;
  close(): Promise<void>;
}

async function peerlineSubject(name: string, tuning: boolean): Promise<Subject> {
  const { a, b } = await quicEnginePair(name, {
    adapter: { tuning },
    engine: { drainDeadlineMs: 200, forceCloseGraceMs: 200 },
    serve: (b) => b.handle('bench/1', (stream) => stream.close()),
  });
  // Connect (and warm up) before timing.
  for (let i = 0; i < 20; i++) (await a.openStream(b.peerId, 'bench/1')).close();
  return {
    name,
    async open() {
      const started = performance.now();
      const stream = await a.openStream(b.peerId, 'bench/1');
      const took = performance.now() - started;
      stream.close();
      return took;
    },
    async close() {
      await Promise.all([a.stop({ force: true }), b.stop({ force: true })]);
    },
  };
}

async function rawSubject(name: string): Promise<Subject> {
  const server = await rawServer(await benchIdentity(`${name}-server`));
  const client = await rawClient(server.port, await benchIdentity(`${name}-client`));
  for (let i = 0; i < 20; i++) await client.open();
  return {
    name,
    open: () => client.open(),
    async close() {
      await client.close();
      await server.close();
    },
  };
}

interface Tally {
  latencies: number[];
  cpuMs: number;
  opens: number;
  rates: number[];
}

async function sequential(subject: Subject, tally: Tally): Promise<void> {
  const cpu = process.cpuUsage();
  for (let i = 0; i < BATCH; i++) tally.latencies.push(await subject.open());
  tally.cpuMs += cpuMsSince(cpu);
  tally.opens += BATCH;
}

async function concurrent(subject: Subject, tally: Tally): Promise<void> {
  let count = 0;
  const end = performance.now() + WINDOW_MS;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        await subject.open();
        count++;
      }
    }),
  );
  tally.rates.push((count / (performance.now() - started)) * 1000);
}

async function main(): Promise<void> {
  const subjects: Subject[] = [
    await rawSubject('raw'),
    await peerlineSubject('peerline', true),
    await peerlineSubject('peerline-untuned', false),
  ];
  const tallies = new Map<string, Tally>(subjects.map((s) => [s.name, { latencies: [], cpuMs: 0, opens: 0, rates: [] }]));
  say(`stream open + header + ACK, loopback; ${ROUNDS} rounds x (${BATCH} sequential + ${CONCURRENCY} concurrent for ${WINDOW_MS} ms) per configuration`);
  for (let round = 0; round < ROUNDS; round++) {
    const order = subjects.map((_, i) => subjects[(i + round) % subjects.length]!);
    for (const subject of order) await sequential(subject, tallies.get(subject.name)!);
    for (const subject of order) await concurrent(subject, tallies.get(subject.name)!);
  }
  const rows = subjects.map((s) => {
    const t = tallies.get(s.name)!;
    const sorted = sortedCopy(t.latencies);
    const rates = sortedCopy(t.rates);
    return {
      name: s.name,
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      rate: percentile(rates, 0.5),
      cpu: t.cpuMs / t.opens,
    };
  });
  say('');
  say('configuration       p50 ms   p99 ms   streams/s (x' + CONCURRENCY + ')   CPU ms/open');
  for (const r of rows) {
    say(`${r.name.padEnd(18)} ${r.p50.toFixed(2).padStart(7)} ${r.p99.toFixed(2).padStart(8)} ${int(r.rate).padStart(12)} ${r.cpu.toFixed(2).padStart(16)}`);
  }
  const raw = rows.find((r) => r.name === 'raw')!;
  const pl = rows.find((r) => r.name === 'peerline')!;
  const untuned = rows.find((r) => r.name === 'peerline-untuned')!;
  say('');
  say(`peerline / raw:          p50 ${(pl.p50 / raw.p50).toFixed(2)}  p99 ${(pl.p99 / raw.p99).toFixed(2)}  CPU ${(pl.cpu / raw.cpu).toFixed(2)}  rate ${(pl.rate / raw.rate).toFixed(2)} (higher is better)`);
  say(`peerline-untuned / raw:  p50 ${(untuned.p50 / raw.p50).toFixed(2)}  p99 ${(untuned.p99 / raw.p99).toFixed(2)}  CPU ${(untuned.cpu / raw.cpu).toFixed(2)}  rate ${(untuned.rate / raw.rate).toFixed(2)}`);
  for (const s of subjects) await s.close();
}

await main();
