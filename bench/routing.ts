/**
 * Routing overhead: stream requests per second end to end over the memory
 * network, through the engine's request routing versus straight into the
 * peers' machines.
 *
 * Setup (fresh for every round): one hub engine and P remote engines on one
 * MemoryNetwork with latency 0 on a VirtualClock (virtual time costs nothing
 * real; with latency 0 every delivery is due "now"). The hub is `ready` with
 * every remote before timing starts. Each remote's handler for the protocol
 * counts the stream and closes it at once.
 *
 * Requests go, round robin over the peers, in batches of B, one of three ways:
 *
 *  - direct      `actorOf(hub, peer).send({ type: 'REQUEST', ... })` (the test hook of runtime/test-hooks.ts):
 *                the machine, its effects and the adapter; nothing of the
 *                routing layer.
 *  - routing     `hub.requests.next({ peerId, protocol, reply })`: the Subject,
 *                validation, the registry lookup, the pending-request record,
 *                then the same machine path, then delivery to `reply`.
 *  - openStream  `hub.openStream(peer, protocol, { timeoutMs, signal })`: the
 *                public promise API, with a deadline timer and an abort
 *                listener armed (and disarmed) for every request.
 *
 * Within a round the three paths take turns batch by batch on the same
 * engines, and each batch is timed alone (process.hrtime.bigint()), so the
 * paths share the same heap, JIT state and machine load; a path's time is
 * the sum of its batches. Each turn of three batches uses one of the six
 * orders of the paths, cycling, so that no path always follows the same
 * one (a batch pays for collecting the garbage its predecessor left). Reported:
 * per path the median rate over rounds; the ratio (routing time / direct
 * time) as the median over every pair of back-to-back batches (the pairs
 * least disturbed by load elsewhere on the machine), and per round.
 *
 * The direct path cannot complete identical work: the engine delivers an
 * opened stream only to a pending request, and a request sent straight into
 * the machine has none. So on the direct path `#deliver` finds no pending
 * request, aborts the freshly opened stream (counted in
 * `metrics().internalErrors`, one per request) and sends the machine
 * `STREAM.CLOSED` to give the stream's credit back, so the machine handles
 * the same three events per request on every path (REQUEST, STREAM.OPENED,
 * STREAM.CLOSED). (Engines before commit ed615c2 did not give the credit
 * back; for them this benchmark sends that STREAM.CLOSED itself at the end
 * of each direct batch, timed, and prints how many it sent.) What still
 * differs per request: the direct path does no wrapStream and no reply, and
 * its stream ends by a local abort instead of the remote's close. On every
 * path the stream is opened on the wire, the remote accepts it and runs its
 * handler; the counts printed prove it.
 *
 *   npx tsx bench/routing.ts [--peers 10] [--requests 10000] [--batch 500] [--rounds 5]
 *   (--requests is per path and per round)
 */
import { fileURLToPath } from 'node:url';
import type { MemoryNetwork, VirtualClock } from '../adapters/memory/index.js';
import { Engine, type EngineInit, type StreamAnswer } from '../runtime/index.js';
import { RESULT_PREFIX, drive, gc, hubWithPeers, int, median, numberArg, say } from './common.js';
import { actorOf } from '../runtime/test-hooks.js';

const PROTOCOL = '/bench/1';
const GOAL = 1.25;

export type Path = 'direct' | 'routing' | 'openStream';
export const PATHS: readonly Path[] = ['direct', 'routing', 'openStream'];
/** The six orders of the three paths. */
const ORDERS: readonly (readonly Path[])[] = [
  ['direct', 'routing', 'openStream'],
  ['routing', 'openStream', 'direct'],
  ['openStream', 'direct', 'routing'],
  ['direct', 'openStream', 'routing'],
  ['openStream', 'routing', 'direct'],
  ['routing', 'direct', 'openStream'],
];

export interface PathResult {
  readonly requests: number;
  readonly ms: number;
  readonly perSecond: number;
  /** Streams the remote handlers received. */
  readonly remoteOpened: number;
  /** Streams the network saw accepted. */
  readonly wireOpened: number;
  /** Requests answered with a stream (routing paths). */
  readonly delivered: number;
  /** Requests answered with an error (routing paths). */
  readonly failed: number;
  /** Opened streams the hub dropped for want of a pending request (direct path). */
  readonly dropped: number;
  /** STREAM.CLOSED events this benchmark had to send for dropped streams the engine kept counted (direct path). */
  readonly compensated: number;
  /** Time of each batch of this path, in order; batch k of every path ran back to back. */
  readonly batchMs: readonly number[];
  /** Process CPU time (user + system, all threads) of each batch. */
  readonly batchCpuMs: readonly number[];
}

export type RoundResult = Record<Path, PathResult>;

export interface RoutingReport {
  readonly peers: number;
  readonly requests: number;
  readonly batch: number;
  readonly rounds: number;
  /** Median over rounds of each path's rate, requests per second. */
  readonly medians: Record<Path, number>;
  /** Median over every pair of back-to-back batches of (routing time / direct time). */
  readonly ratio: number;
  /** Same for openStream. */
  readonly ratioOpenStream: number;
  /** Median over rounds of (routing time / direct time) of the whole round. */
  readonly roundRatio: number;
  readonly roundRatioOpenStream: number;
  /** Median over back-to-back batch pairs of the ratio of process CPU time (a cross-check under load). */
  readonly cpuRatio: number;
  readonly cpuRatioOpenStream: number;
  readonly goal: number;
}

/** Hub options: nothing may interfere with a pure throughput run. */
const HUB: EngineInit = {
  idleTimeoutMs: Infinity,
  maxConnections: Infinity,
  streamOpenTimeoutMs: 60_000,
};

interface World {
  readonly clock: VirtualClock;
  readonly network: MemoryNetwork;
  readonly hub: Engine;
  readonly peers: readonly string[];
  readonly remotes: Engine[];
  remoteOpened: number;
}

async function world(peerCount: number): Promise<World> {
  let w: World | undefined;
  const made = await hubWithPeers(peerCount, {
    hub: HUB,
    protocol: PROTOCOL,
    handler: (stream) => {
      w!.remoteOpened += 1;
      stream.close();
    },
  });
  w = { ...made, remoteOpened: 0 };
  const states = w.hub.snapshot().peers.map((p) => p.state);
  if (states.length !== peerCount || states.some((s) => s !== 'ready')) throw new Error(`peers not ready: ${states.join(',')}`);
  return w;
}

async function teardown(w: World): Promise<void> {
  const stops = [w.hub, ...w.remotes].map((e) => e.stop({ force: true }));
  let done = false;
  void Promise.all(stops).then(() => {
    done = true;
  });
  for (let i = 0; i < 1000 && !done; i++) {
    const next = w.clock.nextAt();
    await w.clock.advance(next === undefined ? 0 : Math.max(0, next - w.clock.now()));
  }
}

/** Hub machine counters that must be back to zero once a batch is done. */
function hubBusy(w: World): number {
  let busy = 0;
  for (const peerId of w.peers) {
    const context = actorOf(w.hub, peerId)!.getSnapshot().context;
    busy += context.streams + context.opening.length + context.queue.length;
  }
  return busy;
}

interface Tally {
  ns: bigint;
  /** Time of each batch, in order. */
  batchMs: number[];
  /** CPU time of the process (all its threads) during each batch. */
  batchCpuMs: number[];
  requests: number;
  remoteOpened: number;
  wireOpened: number;
  delivered: number;
  failed: number;
  dropped: number;
  compensated: number;
}

/**
 * One round: a fresh world, then `requests` per path in batches of `batch`,
 * the paths taking turns batch by batch, turn k in the order ORDERS[(k + first) % 6].
 */
export async function runRound(requests: number, batch: number, peerCount: number, first = 0): Promise<RoundResult> {
  const w = await world(peerCount);
  const { clock, network, hub, peers } = w;
  const actors = peers.map((p) => actorOf(hub, p)!);
  const connectionIds = actors.map((a) => a.getSnapshot().context.connectionId!);
  // Signals for openStream are made up front: they are the caller's, not the engine's.
  const signals = Array.from({ length: requests }, () => new AbortController().signal);
  const tallies = Object.fromEntries(
    PATHS.map((p): [Path, Tally] => [p, { ns: 0n, batchMs: [], batchCpuMs: [], requests: 0, remoteOpened: 0, wireOpened: 0, delivered: 0, failed: 0, dropped: 0, compensated: 0 }]),
  ) as Record<Path, Tally>;
  let delivered = 0;
  let failed = 0;
  const reply = (answer: StreamAnswer): void => {
    if (answer.ok) delivered += 1;
    else failed += 1;
  };
  const onStream = (): void => void (delivered += 1);
  const onError = (): void => void (failed += 1);
  let nextId = 0;
  gc();

  const batches = Math.ceil(requests / batch);
  for (let b = 0; b < batches * PATHS.length; b++) {
    // Each turn of three batches runs the paths in one of the six orders, cycling, so every path follows
    // every other equally often: the garbage a batch leaves behind (collected during the next) is shared fairly.
    const path = ORDERS[(Math.floor(b / PATHS.length) + first) % ORDERS.length]![b % PATHS.length]!;
    const t = tallies[path];
    const size = Math.min(batch, requests - t.requests);
    const remoteBefore = w.remoteOpened;
    const wireBefore = network.stats().streamsOpened;
    const droppedBefore = hub.metrics().internalErrors;
    const deliveredBefore = delivered;
    const failedBefore = failed;
    const cpuStart = process.cpuUsage();
    const start = process.hrtime.bigint();
    for (let k = 0; k < size; k++) {
      const p = (t.requests + k) % peerCount;
      switch (path) {
        case 'direct':
          actors[p]!.send({ type: 'REQUEST', request: { id: `d${(nextId++).toString(36)}`, kind: 'stream', protocol: PROTOCOL } });
          break;
        case 'routing':
          hub.requests.next({ peerId: peers[p]!, protocol: PROTOCOL, reply });
          break;
        case 'openStream':
          hub.openStream(peers[p]!, PROTOCOL, { timeoutMs: 60_000, signal: signals[t.requests + k]! }).then(onStream, onError);
          break;
      }
    }
    if (path === 'direct') {
      await drive(
        clock,
        () => w.remoteOpened - remoteBefore >= size && hub.metrics().internalErrors - droppedBefore >= size && network.streamCount() === 0,
        `direct batch ${b}`,
      );
      // An engine that does not give back the credit of a stream it dropped leaves the machine counting it
      // open; close the count here so every path ends each batch alike (see the header). Counted and printed.
      for (let p = 0; p < peerCount; p++) {
        for (let k = actors[p]!.getSnapshot().context.streams; k > 0; k--) {
          actors[p]!.send({ type: 'STREAM.CLOSED', connectionId: connectionIds[p]!, inbound: false });
          t.compensated += 1;
        }
      }
    } else {
      await drive(
        clock,
        () =>
          w.remoteOpened - remoteBefore >= size &&
          delivered + failed - deliveredBefore - failedBefore >= size &&
          network.streamCount() === 0 &&
          hubBusy(w) === 0,
        `${path} batch ${b}`,
      );
    }
    const ns = process.hrtime.bigint() - start;
    const cpu = process.cpuUsage(cpuStart);
    t.ns += ns;
    t.batchMs.push(Number(ns) / 1e6);
    t.batchCpuMs.push((cpu.user + cpu.system) / 1000);
    t.requests += size;
    t.remoteOpened += w.remoteOpened - remoteBefore;
    t.wireOpened += network.stats().streamsOpened - wireBefore;
    t.dropped += hub.metrics().internalErrors - droppedBefore;
    t.delivered += delivered - deliveredBefore;
    t.failed += failed - failedBefore;
    if (hubBusy(w) !== 0) throw new Error(`${path}: hub machines still hold streams or requests after batch ${b}`);
  }
  if (hub.metrics().pendingRequests !== 0) throw new Error('pending requests left after the round');

  const result = {} as RoundResult;
  for (const path of PATHS) {
    const t = tallies[path];
    const expectDropped = path === 'direct' ? requests : 0;
    const expectDelivered = path === 'direct' ? 0 : requests;
    if (t.remoteOpened !== requests || t.wireOpened !== requests || t.dropped !== expectDropped || t.delivered !== expectDelivered || t.failed !== 0) {
      const { batchMs: _times, batchCpuMs: _cpu, ns: _ns, ...counts } = t;
      throw new Error(`${path}: unequal work: ${JSON.stringify(counts)}`);
    }
    const ms = Number(t.ns) / 1e6;
    result[path] = {
      requests,
      ms,
      perSecond: (requests / ms) * 1000,
      remoteOpened: t.remoteOpened,
      wireOpened: t.wireOpened,
      delivered: t.delivered,
      failed: t.failed,
      dropped: t.dropped,
      compensated: t.compensated,
      batchMs: t.batchMs,
      batchCpuMs: t.batchCpuMs,
    };
  }
  await teardown(w);
  return result;
}

export async function routingBench(options: { peers: number; requests: number; batch: number; rounds: number }): Promise<RoutingReport> {
  const { peers, requests, batch, rounds } = options;
  if (batch / peers > 100) throw new RangeError('batch / peers must stay within the 100 streams a connection may have in flight');
  say(
    `routing: ${int(requests)} stream requests per path per round over ${peers} ready peers, batches of ${batch} ` +
      `(paths take turns batch by batch), memory network latency 0`,
  );
  // Warm-up round, discarded.
  await runRound(Math.min(requests, 3 * batch), batch, peers);
  const results: RoundResult[] = [];
  for (let round = 0; round < rounds; round++) {
    const r = await runRound(requests, batch, peers, round);
    results.push(r);
    const cells = PATHS.map((p) => `${p} ${int(r[p].perSecond).padStart(6)}/s ${((r[p].ms * 1000) / requests).toFixed(0).padStart(3)} us`);
    say(`  round ${round + 1}: ${cells.join('   ')}   routing/direct ${(r.routing.ms / r.direct.ms).toFixed(3)}x`);
  }
  const last = results[results.length - 1]!;
  say(
    `  work per path, checked in every round (last round shown): remote handlers ran ${PATHS.map((p) => int(last[p].remoteOpened)).join(' / ')}, ` +
      `streams accepted on the wire ${PATHS.map((p) => int(last[p].wireOpened)).join(' / ')} (direct / routing / openStream);`,
  );
  say(
    `  streams delivered to the caller ${int(last.routing.delivered)} (routing), ${int(last.openStream.delivered)} (openStream), ` +
      `dropped by the hub ${int(last.direct.dropped)} (direct); failures ${last.routing.failed + last.openStream.failed}; ` +
      `stream credits the bench had to give back on the direct path ${int(results.reduce((n, r) => n + r.direct.compensated, 0))}`,
  );
  const medians = Object.fromEntries(PATHS.map((p) => [p, median(results.map((r) => r[p].perSecond))])) as Record<Path, number>;
  const roundRatios = (p: Path): number[] => results.map((r) => r[p].ms / r.direct.ms);
  // Batch k of each path ran back to back: their ratio is the closest pair, least touched by load elsewhere.
  const batchRatios = (p: Path): number[] => results.flatMap((r) => r[p].batchMs.map((ms, k) => ms / r.direct.batchMs[k]!));
  const cpuRatios = (p: Path): number[] => results.flatMap((r) => r[p].batchCpuMs.map((ms, k) => ms / r.direct.batchCpuMs[k]!));
  const ratio = median(batchRatios('routing'));
  const ratioOpenStream = median(batchRatios('openStream'));
  const spread = (values: number[]): string => `${Math.min(...values).toFixed(3)}..${Math.max(...values).toFixed(3)}`;
  say('');
  for (const p of PATHS) {
    say(`  median ${p.padEnd(10)} ${int(medians[p]).padStart(7)} req/s  ${(1e6 / medians[p]).toFixed(0).padStart(4)} us/req`);
  }
  const verdict = (r: number): string => (r <= GOAL ? 'MET' : 'NOT MET');
  for (const [p, value] of [['routing', ratio], ['openStream', ratioOpenStream]] as const) {
    say(
      `  ${`${p}/direct`.padEnd(18)} ${value.toFixed(3)}x median of ${batchRatios(p).length} back-to-back batch pairs; ` +
        `per round ${median(roundRatios(p)).toFixed(3)}x median (${spread(roundRatios(p))}); ` +
        `CPU time ${median(cpuRatios(p)).toFixed(3)}x  goal <= ${GOAL}x: ${verdict(value)}`,
    );
  }
  say('  direct: no pending request exists, so the hub aborts each opened stream (internalErrors +1 each) and gives');
  say('  its credit back; routing and openStream deliver every stream to the caller, and the remote closes it.');
  return {
    peers,
    requests,
    batch,
    rounds,
    medians,
    ratio,
    ratioOpenStream,
    roundRatio: median(roundRatios('routing')),
    roundRatioOpenStream: median(roundRatios('openStream')),
    cpuRatio: median(cpuRatios('routing')),
    cpuRatioOpenStream: median(cpuRatios('openStream')),
    goal: GOAL,
  };
}

const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) {
  const report = await routingBench({
    peers: numberArg('peers', 10),
    requests: numberArg('requests', 10_000),
    batch: numberArg('batch', 500),
    rounds: numberArg('rounds', 5),
  });
  say(`${RESULT_PREFIX}${JSON.stringify({ bench: 'routing', ...report })}`);
}
