/**
 * Resumable streams against plain ones, figures from one run:
 *
 * 0. The resume layer's own cost, on the memory network (latency 0, virtual
 *    clock: no transport limit, so the framing, replay buffer and ACKs are
 *    all that differs): the same transfer as 1, plain and resumable rounds
 *    alternating.
 * 1. Throughput of a resumable stream against a plain one over real QUIC on
 *    loopback: two engines,
 *    alice writes `--mb` MiB to bob in 64 KiB chunks, bob reads to the end and
 *    answers one byte. Plain and resumable rounds alternate (`--rounds` of
 *    each), so load on the machine hits both alike; the ratio is of the
 *    medians.
 * 2. Time from reconnect to the first resumed byte: alice streams to bob
 *    through the UDP fault proxy; the proxy blackholes every datagram until
 *    alice's session is suspended (the heartbeats declared the connection
 *    dead), then heals. Measured from the heal, and from the moment alice's
 *    new connection is `ready`, to the first byte bob reads after it
 *    (`--cuts` times).
 *
 *   npx tsx bench/resume.ts [--mb 32] [--rounds 4] [--cuts 10]
 */
import { MemoryNetwork, VirtualClock } from '../adapters/memory/index.js';
import { createQuicAdapter, quicAddress, type QuicAdapter } from '../adapters/quic/index.js';
import { createEngine, type Engine, type EngineInit, type PeerStream } from '../runtime/index.js';
import { UdpProxy } from '../bin/udp-proxy.js';
import { drive, median, numberArg, quietLogger, RESULT_PREFIX, say } from './common.js';
import { benchIdentity, percentile, sortedCopy } from './quic/common.js';

const MB = 1024 * 1024;
const CHUNK = 64 * 1024;
const mb = numberArg('mb', 32);
const rounds = numberArg('rounds', 4);
const cuts = numberArg('cuts', 10);

const init: EngineInit = {
  heartbeat: { intervalMs: 200, timeoutMs: 150, misses: 1 },
  connectTimeoutMs: 2_000,
  resume: { retry: { strategy: 'fixed', delayMs: 50 }, timeoutMs: 3_000 },
};

/** `fastFailure`: heartbeats that notice a dead link in ~350 ms (for the reconnect part only; bulk transfers on a loaded machine can delay a pong past them). */
async function node(name: string, fastFailure: boolean): Promise<{ engine: Engine; adapter: QuicAdapter }> {
  const adapter = createQuicAdapter({ identity: await benchIdentity(name) });
  const engine = createEngine({ adapter, logger: quietLogger, trace: false, ...(fastFailure ? init : {}) });
  await engine.start();
  return { engine, adapter };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Bob's side: read to the end, answer one byte. */
async function sink(stream: PeerStream): Promise<void> {
  const reader = stream.readable.getReader();
  for (;;) {
    const { done } = await reader.read();
    if (done) break;
  }
  const writer = stream.writable.getWriter();
  await writer.write(new Uint8Array([1]));
  await writer.close();
}

async function transfer(alice: Engine, bob: string, resumable: boolean): Promise<number> {
  const chunk = new Uint8Array(CHUNK).fill(7);
  const started = performance.now();
  const stream = resumable
    ? await alice.openStream(bob, 'sink/1', { resumable: true, timeoutMs: 10_000 })
    : await alice.openStream(bob, 'sink/1', { timeoutMs: 10_000 });
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  for (let sent = 0; sent < mb * MB; sent += CHUNK) await writer.write(chunk);
  await writer.close();
  const { value } = await reader.read();
  if (value?.[0] !== 1) throw new Error('bob did not answer');
  const seconds = (performance.now() - started) / 1000;
  stream.close();
  return mb / seconds;
}

export interface ResumeReport {
  readonly memory: Ratio;
  readonly quic: Ratio;
  /** Sorted, ms. */
  readonly fromHeal: readonly number[];
  readonly fromReady: readonly number[];
}

interface Ratio {
  plain: number;
  resumable: number;
  ratio: number;
}

/** Alternates plain and resumable transfers; medians and their ratio. */
async function alternate(run: (resumable: boolean) => Promise<number>, label: string): Promise<Ratio> {
  await run(false); // warm up: connection, JIT
  await run(true);
  const plain: number[] = [];
  const resumable: number[] = [];
  for (let r = 0; r < rounds; r++) {
    plain.push(await withTimeout(run(false), 120_000, 'plain transfer'));
    resumable.push(await withTimeout(run(true), 120_000, 'resumable transfer'));
    say(`  ${label} round ${r + 1}: plain ${plain.at(-1)!.toFixed(1)} MiB/s, resumable ${resumable.at(-1)!.toFixed(1)} MiB/s`);
  }
  const p = median(plain);
  const q = median(resumable);
  return { plain: p, resumable: q, ratio: q / p };
}

async function memoryThroughput(): Promise<Ratio> {
  const clock = new VirtualClock();
  const network = new MemoryNetwork({ clock, latencyMs: 0 });
  const alice = createEngine({ adapter: network.node('alice'), clock, logger: quietLogger, trace: false });
  const bob = createEngine({ adapter: network.node('bob'), clock, logger: quietLogger, trace: false });
  let done = false;
  const settle = <T>(p: Promise<T>): Promise<T> => {
    done = false;
    const watched = p.finally(() => {
      done = true;
    });
    return drive(clock, () => done, 'memory transfer', 1, 10_000_000).then(() => watched);
  };
  await settle(Promise.all([alice.start(), bob.start()]));
  try {
    bob.handle('sink/1', sink);
    alice.addPeer('bob', [network.address('bob')]);
    return await alternate((resumable) => settle(transfer(alice, 'bob', resumable)), 'memory');
  } finally {
    await settle(Promise.all([alice.stop({ force: true }), bob.stop({ force: true })]));
  }
}

async function throughput(): Promise<Ratio> {
  const a = await node('alice', false);
  const b = await node('bob', false);
  try {
    b.engine.handle('sink/1', sink);
    a.engine.addPeer(b.engine.peerId, [b.adapter.address]);
    return await alternate((resumable) => transfer(a.engine, b.engine.peerId, resumable), 'quic');
  } finally {
    await Promise.all([a.engine.stop({ force: true }), b.engine.stop({ force: true })]);
  }
}

async function reconnects(): Promise<{ fromHeal: number[]; fromReady: number[] }> {
  const a = await node('alice', true);
  const b = await node('bob', true);
  const proxy = await UdpProxy.create({ targetPort: b.adapter.port, seed: 5 });
  const fromHeal: number[] = [];
  const fromReady: number[] = [];
  let firstByteWaiter: ((at: number) => void) | undefined;
  try {
    b.engine.handle('sink/1', async (stream) => {
      const reader = stream.readable.getReader();
      for (;;) {
        const { done } = await reader.read();
        if (done) break;
        const wake = firstByteWaiter;
        firstByteWaiter = undefined;
        wake?.(performance.now());
      }
    });
    a.engine.addPeer(b.engine.peerId, [quicAddress(proxy.port)]);
    const stream = await a.engine.openStream(b.engine.peerId, 'sink/1', { resumable: true, timeoutMs: 10_000 });
    const writer = stream.writable.getWriter();
    let writing = true;
    const chunk = new Uint8Array(16 * 1024).fill(3);
    const pump = (async () => {
      while (writing) await writer.write(chunk);
    })();
    pump.catch(() => {});
    let readyAt = 0;
    const sub = a.engine.transitions$.subscribe((t) => {
      if (t.to === 'ready') readyAt = performance.now();
    });
    for (let i = 0; i < cuts; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const suspended = new Promise<void>((resolve) => {
        const s = a.engine.sessionTransitions$.subscribe((t) => {
          if (t.to === 'suspended.waiting') {
            queueMicrotask(() => s.unsubscribe());
            resolve();
          }
        });
      });
      proxy.blackhole();
      await withTimeout(suspended, 10_000, 'suspension');
      readyAt = 0;
      const first = new Promise<number>((resolve) => {
        firstByteWaiter = resolve;
      });
      const healedAt = performance.now();
      proxy.heal();
      const at = await withTimeout(first, 20_000, 'first resumed byte');
      fromHeal.push(at - healedAt);
      if (readyAt > 0) fromReady.push(at - readyAt);
    }
    sub.unsubscribe();
    writing = false;
    stream.abort('done');
    return { fromHeal, fromReady };
  } finally {
    await Promise.all([a.engine.stop({ force: true }), b.engine.stop({ force: true })]);
    await proxy.close();
  }
}

const m = await memoryThroughput();
say(`memory network, ${mb} MiB per transfer, median of ${rounds}: plain ${m.plain.toFixed(1)} MiB/s, resumable ${m.resumable.toFixed(1)} MiB/s, resumable/plain ${m.ratio.toFixed(3)}`);
const t = await throughput();
say(`QUIC loopback, ${mb} MiB per transfer, median of ${rounds}: plain ${t.plain.toFixed(1)} MiB/s, resumable ${t.resumable.toFixed(1)} MiB/s, resumable/plain ${t.ratio.toFixed(3)}`);
const r = await reconnects();
const heal = sortedCopy(r.fromHeal);
const ready = sortedCopy(r.fromReady);
say(
  `reconnect to first resumed byte, ${cuts} cuts: from heal p50 ${percentile(heal, 0.5).toFixed(1)} ms (max ${heal.at(-1)!.toFixed(1)}), ` +
    `from new connection ready p50 ${percentile(ready, 0.5).toFixed(1)} ms (max ${ready.at(-1)?.toFixed(1)}, ${ready.length} samples)`,
);
const report: ResumeReport = { memory: m, quic: t, fromHeal: heal, fromReady: ready };
say(`${RESULT_PREFIX}${JSON.stringify(report)}`);
process.exit(0);
