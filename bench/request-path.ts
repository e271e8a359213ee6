/**
 * The memory network's request path end to end: how many stream requests per
 * second an engine completes, against the raw memory network doing the same
 * stream work without an engine.
 *
 * One request: the hub opens a stream to a remote, the remote's handler gets
 * it and closes it at once, and the stream ends on both sides; the virtual
 * clock is moved (latency 0, so every delivery is due "now") until that is
 * done. Two paths on one `MemoryNetwork` and one `VirtualClock`:
 *
 *  - raw      `MemoryConnection.openStream(protocol, { signal })` on a hub
 *             `MemoryAdapter`; each remote adapter accepts every stream and
 *             closes it. The transport alone: the floor the engine sits on.
 *  - engine   `hub.openStream(peer, protocol, { timeoutMs, signal })` on a
 *             hub engine; each remote engine's handler closes the stream.
 *             The machines (hub and remote), routing, pending records,
 *             timers, stream wrapping, on the same transport.
 *
 * Two ways to issue them:
 *
 *  - batch       B requests at once round robin over P peers, then the clock is
 *                driven until all are done (throughput, as the simulator and a
 *                busy agent issue them);
 *  - sequential  one request at a time, the clock driven until it is done
 *                (nothing is amortized over a batch).
 *
 * Both paths run in the same process, taking turns batch by batch (the order
 * alternating), each batch timed alone with `process.hrtime.bigint()` and
 * `process.cpuUsage()`. The machine is shared and often loaded, so the rate
 * is printed by wall time and by CPU time (CPU time is what load elsewhere
 * disturbs least); the ratio engine/raw is the median over back-to-back batch
 * pairs. Every batch checks its work: each request answered with a stream,
 * each remote handler run, the network holding no stream, and the hub's
 * machines holding nothing.
 *
 *   npx tsx bench/request-path.ts [--peers 10] [--requests 20000] [--batch 500] [--sequential 2000] [--rounds 3]
 */
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Connection, ConnectionHandlers, IncomingStream, Stream } from '../protocol/adapter.js';
import { MemoryNetwork, VirtualClock } from '../adapters/memory/index.js';
import { Engine, type EngineInit, type PeerStream } from '../runtime/index.js';
import { RESULT_PREFIX, drive, gc, hubWithPeers, int, median, numberArg, say } from './common.js';
import { actorOf } from '../runtime/test-hooks.js';

const PROTOCOL = '/bench/1';
/** Requests per second the engine path must reach. */
export const GOAL_RATE = 20_000;

export type RequestPath = 'raw' | 'engine';
const PATHS: readonly RequestPath[] = ['raw', 'engine'];
export type Mode = 'batch' | 'sequential';

/**
 * CPU time of the main thread alone, in ms, from Linux's scheduler counters
 * (nanoseconds); NaN where there are none. Process CPU time also counts the
 * garbage collector's helper threads, which run beside the main thread; on a
 * loaded machine they compete with it.
 */
function mainThreadCpuMs(): number {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return NaN;
  }
}

/** Hub options: nothing may interfere with a pure throughput run. */
const HUB: EngineInit = { idleTimeoutMs: Infinity, maxConnections: Infinity, streamOpenTimeoutMs: 60_000 };

interface Counts {
  /** Streams handed to the caller. */
  delivered: number;
  failed: number;
  /** Remote handlers run. */
  handled: number;
}

/** One path's world: issue requests, and tell when everything issued is done. */
interface World {
  readonly clock: VirtualClock;
  readonly network: MemoryNetwork;
  readonly counts: Counts;
  /** Issues request number `k` (round robin over the peers). */
  issue(k: number): void;
  /** True when the hub's machines hold nothing for its requests any more. */
  settled(): boolean;
  /** Requests the hub has not answered. */
  pendingRequests(): number;
  stop(): Promise<void>;
}

async function rawWorld(peerCount: number): Promise<World> {
  const clock = new VirtualClock();
  const network = new MemoryNetwork({ clock, latencyMs: 0 });
  const counts: Counts = { delivered: 0, failed: 0, handled: 0 };
  const hub = network.node('hub');
  const remote: ConnectionHandlers = {
    onControl: () => {},
    onStream: (incoming: IncomingStream) => {
      counts.handled += 1;
      incoming.accept().close();
    },
    onClose: () => {},
  };
  const peers: string[] = [];
  for (let i = 0; i < peerCount; i++) {
    const peerId = `peer-${i}`;
    peers.push(peerId);
    await network.node(peerId).listen((connection) => connection.setHandlers(remote));
  }
  const connections: Connection[] = [];
  const signal = new AbortController().signal;
  for (const peerId of peers) {
    void hub.dial(peerId, network.address(peerId), { signal }).then((connection) => {
      connection.setHandlers({ onControl: () => {}, onStream: (incoming) => incoming.reject('no'), onClose: () => {} });
      connections.push(connection);
    });
  }
  await drive(clock, () => connections.length === peerCount, 'raw: connecting');
  const onStream = (_stream: Stream): void => void (counts.delivered += 1);
  const onError = (): void => void (counts.failed += 1);
  return {
    clock,
    network,
    counts,
    // The engine aborts an open through a controller of its own: the raw path makes one per open too.
    issue: (k) => void connections[k % peerCount]!.openStream(PROTOCOL, { signal: new AbortController().signal }).then(onStream, onError),
    settled: () => true,
    pendingRequests: () => 0,
    stop: () => hub.close(),
  };
}

async function engineWorld(peerCount: number): Promise<World> {
  const counts: Counts = { delivered: 0, failed: 0, handled: 0 };
  const { clock, network, hub, remotes, peers } = await hubWithPeers(peerCount, {
    hub: HUB,
    protocol: PROTOCOL,
    handler: (stream) => {
      counts.handled += 1;
      stream.close();
    },
  });
  const actors = peers.map((peerId) => actorOf(hub, peerId)!);
  const onStream = (_stream: PeerStream): void => void (counts.delivered += 1);
  const onError = (): void => void (counts.failed += 1);
  return {
    clock,
    network,
    counts,
    // The caller's signal is made per request, as a caller would.
    issue: (k) =>
      void hub.openStream(peers[k % peerCount]!, PROTOCOL, { timeoutMs: 60_000, signal: new AbortController().signal }).then(onStream, onError),
    settled: () => {
      for (const actor of actors) {
        const context = actor.getSnapshot().context;
        if (context.streams + context.opening.length + context.queue.length !== 0) return false;
      }
      return true;
    },
    pendingRequests: () => hub.metrics().pendingRequests,
    stop: async () => {
      const stops = [hub, ...remotes].map((e) => e.stop({ force: true }));
      let done = false;
      void Promise.all(stops).then(() => void (done = true));
      for (let i = 0; i < 1000 && !done; i++) {
        const next = clock.nextAt();
        await clock.advance(next === undefined ? 0 : Math.max(0, next - clock.now()));
      }
    },
  };
}

interface Tally {
  requests: number;
  batchMs: number[];
  batchCpuMs: number[];
  /** Main-thread CPU time of all this path's batches. */
  mainCpuMs: number;
}

export interface PathFigures {
  readonly requests: number;
  /** Requests per second by wall time, process CPU time and main-thread CPU time (median over rounds). */
  readonly perSecond: number;
  readonly perCpuSecond: number;
  readonly perMainCpuSecond: number;
}

export interface ModeReport {
  readonly mode: Mode;
  readonly raw: PathFigures;
  readonly engine: PathFigures;
  /** Median over back-to-back batch pairs of engine time / raw time. */
  readonly ratio: number;
  readonly cpuRatio: number;
}

export interface RequestPathReport {
  readonly peers: number;
  readonly goal: number;
  readonly modes: readonly ModeReport[];
}

async function runRound(mode: Mode, requests: number, batch: number, peerCount: number, round: number): Promise<Record<RequestPath, Tally>> {
  const worlds: Record<RequestPath, World> = { raw: await rawWorld(peerCount), engine: await engineWorld(peerCount) };
  const tallies: Record<RequestPath, Tally> = {
    raw: { requests: 0, batchMs: [], batchCpuMs: [], mainCpuMs: 0 },
    engine: { requests: 0, batchMs: [], batchCpuMs: [], mainCpuMs: 0 },
  };
  gc();
  const batches = Math.ceil(requests / batch);
  for (let b = 0; b < batches * PATHS.length; b++) {
    // Alternate which path goes first in each pair, so neither always pays for the other's garbage.
    const pair = Math.floor(b / PATHS.length);
    const path = PATHS[(b + pair + round) % PATHS.length]!;
    const w = worlds[path];
    const t = tallies[path];
    const size = Math.min(batch, requests - t.requests);
    const { delivered, failed, handled } = w.counts;
    const done = (n: number): boolean =>
      w.counts.delivered + w.counts.failed - delivered - failed >= n &&
      w.counts.handled - handled >= n &&
      w.network.streamCount() === 0 &&
      w.settled();
    const mainStart = mainThreadCpuMs();
    const cpuStart = process.cpuUsage();
    const start = process.hrtime.bigint();
    if (mode === 'batch') {
      for (let k = 0; k < size; k++) w.issue(t.requests + k);
      await drive(w.clock, () => done(size), `${path} batch ${b}`);
    } else {
      for (let k = 0; k < size; k++) {
        w.issue(t.requests + k);
        await drive(w.clock, () => done(k + 1), `${path} request ${t.requests + k}`);
      }
    }
    const ns = process.hrtime.bigint() - start;
    const cpu = process.cpuUsage(cpuStart);
    t.mainCpuMs += mainThreadCpuMs() - mainStart;
    t.batchMs.push(Number(ns) / 1e6);
    t.batchCpuMs.push((cpu.user + cpu.system) / 1000);
    t.requests += size;
    if (w.counts.failed !== 0) throw new Error(`${path}: ${w.counts.failed} requests failed`);
  }
  if (worlds.engine.pendingRequests() !== 0) throw new Error('engine: requests still pending after the round');
  for (const path of PATHS) {
    const c = worlds[path].counts;
    if (c.delivered !== requests || c.handled !== requests) throw new Error(`${path}: unequal work: ${JSON.stringify(c)}`);
    await worlds[path].stop();
  }
  return tallies;
}

async function runMode(mode: Mode, requests: number, batch: number, peerCount: number, rounds: number): Promise<ModeReport> {
  // Warm-up round, discarded.
  await runRound(mode, Math.min(requests, 4 * batch), batch, peerCount, 0);
  const results: Record<RequestPath, Tally>[] = [];
  for (let round = 0; round < rounds; round++) {
    const r = await runRound(mode, requests, batch, peerCount, round);
    results.push(r);
    const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);
    const cells = PATHS.map((p) => {
      const ms = sum(r[p].batchMs);
      const cpu = sum(r[p].batchCpuMs);
      return (
        `${p} ${int((requests / ms) * 1000).padStart(7)}/s (CPU ${int((requests / cpu) * 1000).padStart(7)}/s, ` +
        `main thread ${int((requests / r[p].mainCpuMs) * 1000).padStart(7)}/s)`
      );
    });
    say(`  ${mode} round ${round + 1}: ${cells.join('   ')}`);
  }
  const figures = (p: RequestPath): PathFigures => {
    const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);
    return {
      requests,
      perSecond: median(results.map((r) => (requests / sum(r[p].batchMs)) * 1000)),
      perCpuSecond: median(results.map((r) => (requests / sum(r[p].batchCpuMs)) * 1000)),
      perMainCpuSecond: median(results.map((r) => (requests / r[p].mainCpuMs) * 1000)),
    };
  };
  const pairs = (key: 'batchMs' | 'batchCpuMs'): number[] =>
    results.flatMap((r) => r.engine[key].map((ms, k) => ms / Math.max(1e-3, r.raw[key][k]!)));
  return { mode, raw: figures('raw'), engine: figures('engine'), ratio: median(pairs('batchMs')), cpuRatio: median(pairs('batchCpuMs')) };
}

export async function requestPathBench(options: {
  peers: number;
  requests: number;
  batch: number;
  sequential: number;
  rounds: number;
}): Promise<RequestPathReport> {
  const { peers, requests, batch, sequential, rounds } = options;
  say(
    `request path: one stream opened, handled by the remote, closed on both sides; memory network latency 0, ${peers} peers; ` +
      `batch mode ${int(requests)} requests per path per round in batches of ${batch}, sequential mode ${int(sequential)} one at a time`,
  );
  const modes: ModeReport[] = [];
  modes.push(await runMode('batch', requests, batch, peers, rounds));
  modes.push(await runMode('sequential', sequential, Math.min(sequential, 250), peers, rounds));
  say('');
  for (const m of modes) {
    for (const p of PATHS) {
      const f = m[p];
      say(
        `  ${m.mode.padEnd(10)} ${p.padEnd(6)} ${int(f.perSecond).padStart(7)} req/s wall ${(1e6 / f.perSecond).toFixed(1).padStart(6)} us   ` +
          `${int(f.perCpuSecond).padStart(7)} req/s CPU ${(1e6 / f.perCpuSecond).toFixed(1).padStart(6)} us   ` +
          `${int(f.perMainCpuSecond).padStart(7)} req/s main-thread CPU ${(1e6 / f.perMainCpuSecond).toFixed(1).padStart(6)} us`,
      );
    }
    say(`  ${m.mode.padEnd(10)} engine/raw ${m.ratio.toFixed(2)}x wall, ${m.cpuRatio.toFixed(2)}x CPU (median of back-to-back batch pairs)`);
  }
  const b = modes[0]!.engine;
  const verdict = (rate: number): string => (rate >= GOAL_RATE ? 'MET' : 'NOT MET');
  say(
    `  goal: engine >= ${int(GOAL_RATE)} req/s (batch): ${verdict(b.perSecond)} by wall time (${int(b.perSecond)}), ` +
      `${verdict(b.perMainCpuSecond)} by main-thread CPU time (${int(b.perMainCpuSecond)}), ` +
      `${verdict(b.perCpuSecond)} by process CPU time (${int(b.perCpuSecond)}, GC helper threads included)`,
  );
  say(`  machine load average while running: ${loadavg().map((l) => l.toFixed(1)).join(' ')} (1, 5, 15 min) on ${availableParallelism()} cores`);
  return { peers, goal: GOAL_RATE, modes };
}

const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) {
  const report = await requestPathBench({
    peers: numberArg('peers', 10),
    requests: numberArg('requests', 20_000),
    batch: numberArg('batch', 500),
    sequential: numberArg('sequential', 2_000),
    rounds: numberArg('rounds', 3),
  });
  say(`${RESULT_PREFIX}${JSON.stringify({ bench: 'request-path', ...report })}`);
}
