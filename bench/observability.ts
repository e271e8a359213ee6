/**
 * What watching an engine costs: stream requests per second through
 * `openStream` over the memory network (latency 0, virtual clock), with
 *
 *  - off        nothing watching: no inspector, no diagnostics subscriber;
 *  - detached   an inspector attached and detached again before the batch
 *               (the actor system keeps an empty observer set): must cost
 *               what `off` costs, since inspection events are built only
 *               while someone listens;
 *  - channels   a no-op subscriber on every `peerline:*` diagnostics channel;
 *  - inspector  a no-op inspection observer attached (`engine.inspect(fn)`):
 *               every XState inspection event of every machine is built.
 *
 * The modes take turns batch by batch on the same engines (the order
 * rotating), each batch timed alone, so they share heap, JIT state and
 * machine load. Reported: per mode the rate, and its time over `off`'s as
 * the median over every turn (batches run back to back). Also the time of
 * one `prometheus(hub)` with every peer ready.
 *
 *   npx tsx bench/observability.ts [--peers 10] [--requests 10000] [--batch 500] [--rounds 3]
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { fileURLToPath } from 'node:url';
import type { VirtualClock } from '../adapters/memory/index.js';
import { CHANNELS, prometheus, type Engine } from '../runtime/index.js';
import { RESULT_PREFIX, drive, gc, hubWithPeers, int, median, numberArg, say } from './common.js';

const PROTOCOL = '/bench/1';

export type Mode = 'off' | 'detached' | 'channels' | 'inspector';
const MODES: readonly Mode[] = ['off', 'detached', 'channels', 'inspector'];

export interface ObservabilityReport {
  readonly peers: number;
  readonly requests: number;
  readonly batch: number;
  readonly rounds: number;
  /** Requests per second, median over rounds. */
  readonly perSecond: Record<Mode, number>;
  /** Median over turns of (mode batch time / off batch time). */
  readonly ratio: Record<Mode, number>;
  /** One prometheus(hub) call, microseconds (median of 200). */
  readonly prometheusUs: number;
}

interface World {
  readonly clock: VirtualClock;
  readonly hub: Engine;
  readonly remotes: Engine[];
  readonly peers: readonly string[];
}

async function world(peerCount: number): Promise<World> {
  return hubWithPeers(peerCount, {
    hub: { idleTimeoutMs: Infinity, maxConnections: Infinity, streamOpenTimeoutMs: 60_000 },
    protocol: PROTOCOL,
    handler: (stream) => stream.close(),
  });
}

async function teardown(w: World): Promise<void> {
  let done = false;
  void Promise.all([w.hub, ...w.remotes].map((e) => e.stop({ force: true }))).then(() => (done = true));
  for (let i = 0; i < 1000 && !done; i++) {
    const next = w.clock.nextAt();
    await w.clock.advance(next === undefined ? 0 : Math.max(0, next - w.clock.now()));
  }
}

/** Switches `mode` on for the next batch; returns what switches it off. */
function watch(hub: Engine, mode: Mode): () => void {
  const noop = (): void => {};
  switch (mode) {
    case 'off':
      return noop;
    case 'detached':
      hub.inspect(noop).unsubscribe();
      return noop;
    case 'channels': {
      const names = Object.values(CHANNELS);
      for (const name of names) subscribe(name, noop);
      return () => {
        for (const name of names) unsubscribe(name, noop);
      };
    }
    case 'inspector': {
      const subscription = hub.inspect(noop);
      return () => subscription.unsubscribe();
    }
  }
}

async function round(requests: number, batch: number, peerCount: number, first: number): Promise<{ ms: Record<Mode, number>; turns: Record<Mode, number>[] }> {
  const w = await world(peerCount);
  const ms = { off: 0, detached: 0, channels: 0, inspector: 0 } as Record<Mode, number>;
  const turns: Record<Mode, number>[] = [];
  let delivered = 0;
  let failed = 0;
  const ok = (stream: { close(): void }): void => {
    delivered += 1;
    stream.close();
  };
  const ko = (): void => void (failed += 1);
  gc();
  for (let turn = 0; turn * batch < requests; turn++) {
    const times = {} as Record<Mode, number>;
    for (let i = 0; i < MODES.length; i++) {
      const mode = MODES[(turn + first + i) % MODES.length]!;
      const unwatch = watch(w.hub, mode);
      const before = delivered;
      const start = process.hrtime.bigint();
      for (let k = 0; k < batch; k++) w.hub.openStream(w.peers[k % peerCount]!, PROTOCOL).then(ok, ko);
      await drive(w.clock, () => delivered - before >= batch || failed > 0, `${mode} batch`);
      const took = Number(process.hrtime.bigint() - start) / 1e6;
      unwatch();
      if (failed > 0) throw new Error(`${failed} requests failed`);
      times[mode] = took;
      ms[mode] += took;
    }
    turns.push(times);
  }
  await teardown(w);
  return { ms, turns };
}

function prometheusCost(hub: Engine): number {
  const samples: number[] = [];
  for (let i = 0; i < 200; i++) {
    const start = process.hrtime.bigint();
    prometheus(hub);
    samples.push(Number(process.hrtime.bigint() - start) / 1e3);
  }
  return median(samples);
}

export async function observabilityBench(options: { peers: number; requests: number; batch: number; rounds: number }): Promise<ObservabilityReport> {
  const { peers, requests, batch, rounds } = options;
  say(`observability: ${int(requests)} openStream requests per mode per round over ${peers} ready peers, batches of ${batch}, memory network latency 0`);
  await round(Math.min(requests, 2 * batch), batch, peers, 0);
  const rates: Record<Mode, number[]> = { off: [], detached: [], channels: [], inspector: [] };
  const ratios: Record<Mode, number[]> = { off: [], detached: [], channels: [], inspector: [] };
  for (let r = 0; r < rounds; r++) {
    const { ms, turns } = await round(requests, batch, peers, r);
    for (const mode of MODES) rates[mode].push(((Math.ceil(requests / batch) * batch) / ms[mode]) * 1000);
    for (const t of turns) for (const mode of MODES) ratios[mode].push(t[mode] / t.off);
    say(`  round ${r + 1}: ${MODES.map((m) => `${m} ${int(rates[m].at(-1)!)}/s`).join('   ')}`);
  }
  const w = await world(peers);
  const prometheusUs = prometheusCost(w.hub);
  await teardown(w);
  const report: ObservabilityReport = {
    peers,
    requests,
    batch,
    rounds,
    perSecond: Object.fromEntries(MODES.map((m) => [m, median(rates[m])])) as Record<Mode, number>,
    ratio: Object.fromEntries(MODES.map((m) => [m, median(ratios[m])])) as Record<Mode, number>,
    prometheusUs,
  };
  say(`  medians: ${MODES.map((m) => `${m} ${int(report.perSecond[m])}/s (${report.ratio[m].toFixed(3)}x off)`).join(', ')}`);
  say(`  prometheus(hub) with ${peers} peers: ${report.prometheusUs.toFixed(0)} us`);
  return report;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const report = await observabilityBench({
    peers: numberArg('peers', 10),
    requests: numberArg('requests', 10_000),
    batch: numberArg('batch', 500),
    rounds: numberArg('rounds', 3),
  });
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(report)}\n`);
}
