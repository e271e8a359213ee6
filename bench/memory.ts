/**
 * Memory per ready, idle peer, with heartbeats running.
 *
 * One hub engine connects to N remote nodes on a MemoryNetwork (latency 1 ms
 * on a VirtualClock). Each remote is a `MemoryAdapter` with the minimal
 * responder of bench/responder.ts (hello -> hello-ack, ping -> pong), not a
 * whole engine, so the hub is what grows. Hub options: heartbeat every 5 s
 * (timeout 2 s), idleTimeoutMs Infinity, maxConnections Infinity, peers
 * connected with withConnection in batches of CONNECT_BATCH.
 *
 * Each size runs in a fresh child process, twice:
 *   engine     the hub is a peerline engine (what this benchmark is about);
 *   transport  the hub is a bare MemoryAdapter that does the same handshake
 *              and pings by hand (connections ready at the same instant
 *              pinged together every interval, as the engine's heartbeats
 *              come due): the network and the responders alone.
 * The difference of the two heap growths is the hub engine's own heap per
 * peer (machines, registry, timers), apart from the memory network's
 * connection objects, which a real transport would replace with its own.
 *
 * Phases, each measured after a full gc (--expose-gc):
 *   m0 baseline; m1 after the N responders listen; m2 after all N peers are
 *   ready; m3 after the virtual clock ran through BEAT_INTERVALS heartbeat
 *   intervals and a timeout (checked: every peer answered >= BEAT_INTERVALS
 *   pings, the hub recorded as many RTT samples, and every peer is still
 *   ready). Real and CPU time of the connect and heartbeat phases are
 *   recorded too: the heartbeat phase gives the CPU a hub spends per peer per
 *   heartbeat interval (one ping round trip), engine against transport-only,
 *   side by side in the same run: the transport-only hub's figure is the
 *   memory network's raw control-message round trip, the baseline the
 *   engine's figure is a ratio of; their difference is the engine's own cost.
 *
 *   npx tsx bench/memory.ts                      # parent: 10k and 100k, both modes
 *   npx tsx bench/memory.ts --sizes 10000,50000  # other sizes
 *   node --expose-gc --import tsx bench/memory.ts --peers 100000 [--mode transport]   # one child
 *   npm run build && node dist/bench/memory.js --sizes 10000   # compiled by tsc, no tsx
 *   node dist/bench/memory.js --sizes 100000 --node-flags "--max-old-space-size=1024 --no-allocation-site-pretenuring"
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  MemoryNetwork,
  VirtualClock,
  flushMicrotasks,
  type Connection,
  type ConnectionHandlers,
  type ControlMessage,
  type IncomingStream,
} from '../adapters/memory/index.js';
import { PROTOCOL_VERSION } from '../machines/types.js';
import { createEngine } from '../runtime/index.js';
import { RESULT_PREFIX, gc, int, mib, msSince, numberArg, say } from './common.js';
import { respond, type ResponderStats } from './responder.js';

const HEARTBEAT = { intervalMs: 5_000, timeoutMs: 2_000 };
/** Heartbeat intervals the heartbeat phase runs (plus one timeout): every peer pings at least this often. */
const BEAT_INTERVALS = 6;
/**
 * Heartbeat CPU per peer per interval the goal allows at 100,000 peers,
 * microseconds. Checked on the engine-mode process as a whole (engine, memory
 * network and simulated remotes): an upper bound of the engine's own share,
 * which is the difference of two noisy figures.
 */
const HEARTBEAT_GOAL_US = 10;
/** Peers asked for at once while connecting; the dial concurrency matches it, so nobody waits in the dial queue. */
const CONNECT_BATCH = 2_000;
const GOAL_BYTES = 1024 * 1024 * 1024;
const CHILD_TIMEOUT_MS = 240_000;

type Mode = 'engine' | 'transport';

interface Sample {
  readonly rss: number;
  readonly heapUsed: number;
  /** Heap V8 holds from the OS (used + free room it keeps). */
  readonly heapTotal: number;
  readonly external: number;
}

export interface MemoryResult {
  readonly mode: Mode;
  readonly peers: number;
  readonly m0: Sample;
  readonly m1: Sample;
  readonly m2: Sample;
  readonly m3: Sample;
  /** Peak RSS of the child process, bytes. */
  readonly maxRss: number;
  readonly connectMs: number;
  readonly heartbeatMs: number;
  /** Process CPU time (user + system, all threads) of the two phases: what they cost when other processes compete. */
  readonly connectCpuMs: number;
  readonly heartbeatCpuMs: number;
  readonly pingsAnswered: number;
  readonly rttSamples: number;
  readonly ready: number;
  readonly virtualMs: number;
}

interface BareCounts {
  acked: number;
  pongs: number;
}

/**
 * The transport-only hub's handlers of one connection: shared functions on a
 * small object, as the engine's (so the difference of the two modes is the
 * engine, not how each holds its handlers).
 */
class BareHandlers implements ConnectionHandlers {
  readonly counts: BareCounts;
  /** Until the hello-ack. */
  acked: (() => void) | undefined;
  readonly onControl = bareControl;
  readonly onStream = bareStream;
  readonly onClose = bareClose;

  constructor(counts: BareCounts, acked: () => void) {
    this.counts = counts;
    this.acked = acked;
  }
}

function bareControl(this: BareHandlers, message: ControlMessage): void {
  if (message.type === 'hello-ack') {
    this.counts.acked += 1;
    this.acked?.();
    this.acked = undefined;
  } else if (message.type === 'pong') {
    this.counts.pongs += 1;
  }
}

function bareStream(incoming: IncomingStream): void {
  incoming.reject('no streams');
}

function bareClose(): void {}

function cpuMs(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
}

function sample(): Sample {
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external };
}

/** Moves the clock timer by timer until `done()`; fails past `limitMs` of virtual time. */
async function until(clock: VirtualClock, done: () => boolean, what: string, limitMs = 60_000): Promise<void> {
  const end = clock.now() + limitMs;
  await flushMicrotasks();
  while (!done()) {
    const next = clock.nextAt();
    if (next === undefined || next > end) throw new Error(`${what}: not done within ${limitMs} ms of virtual time`);
    await clock.advance(Math.max(0, next - clock.now()));
  }
}

async function child(peers: number, mode: Mode): Promise<MemoryResult> {
  if (!gc()) say('  (no --expose-gc: figures include garbage)');
  const m0 = sample();
  const clock = new VirtualClock();
  const network = new MemoryNetwork({ clock, latencyMs: 1 });
  const stats: ResponderStats = { hellos: 0, pings: 0, connections: 0 };
  const ids: string[] = [];
  for (let i = 0; i < peers; i++) {
    const id = `p${i}`;
    ids.push(id);
    await respond(network.node(id), stats);
  }
  const m1 = sample();

  let ready: () => number;
  let rttSamples: () => number;
  let connect: (id: string) => Promise<unknown>;
  if (mode === 'engine') {
    const hub = createEngine({
      adapter: network.node('hub'),
      clock,
      trace: false,
      heartbeat: HEARTBEAT,
      idleTimeoutMs: Infinity,
      maxConnections: Infinity,
      dialConcurrency: CONNECT_BATCH,
      dialQueueLimit: Infinity,
    });
    await hub.start();
    for (const id of ids) hub.addPeer(id, [network.address(id)]);
    connect = (id) => hub.withConnection(id, () => undefined);
    ready = () => hub.metrics().peers.ready;
    rttSamples = () => hub.metrics().heartbeat.samples;
  } else {
    // The same wire work with no engine: dial, hello/hello-ack, then a ping per connection every interval.
    // Connections ready at the same instant are pinged together, as the engine's heartbeats of peers ready
    // at the same instant come due together: the same batches on the memory network, one timer per batch.
    const adapter = network.node('hub');
    await adapter.listen((c) => c.close(1, 'not accepting'));
    const batches = new Map<number, Connection[]>();
    const counts: BareCounts = { acked: 0, pongs: 0 };
    let seq = 0;
    const sweep = (batch: readonly Connection[]): void => {
      seq += 1;
      for (const c of batch) c.sendControl({ type: 'ping', seq });
      clock.setTimeout(() => sweep(batch), HEARTBEAT.intervalMs);
    };
    connect = async (id) => {
      const connection = await adapter.dial(id, network.address(id), { signal: new AbortController().signal });
      await new Promise<void>((resolve) => {
        connection.setHandlers(new BareHandlers(counts, resolve));
        connection.sendControl({ type: 'hello', version: PROTOCOL_VERSION, peerId: 'hub' });
      });
      const at = clock.now();
      let batch = batches.get(at);
      if (batch === undefined) {
        batch = [];
        batches.set(at, batch);
        const first = batch;
        clock.setTimeout(() => sweep(first), HEARTBEAT.intervalMs);
      }
      batch.push(connection);
    };
    ready = () => counts.acked;
    rttSamples = () => counts.pongs;
  }

  const startConnect = process.hrtime.bigint();
  const cpuConnect = process.cpuUsage();
  let settled = 0;
  let failed = 0;
  for (let sent = 0; sent < peers; ) {
    const end = Math.min(sent + CONNECT_BATCH, peers);
    for (let i = sent; i < end; i++) {
      connect(ids[i]!).then(
        () => void (settled += 1),
        () => void ((settled += 1), (failed += 1)),
      );
    }
    sent = end;
    await until(clock, () => settled >= end, `connecting peers up to ${end}`);
  }
  const connectMs = msSince(startConnect);
  const connectCpuMs = cpuMs(cpuConnect);
  if (failed > 0 || ready() !== peers) throw new Error(`${mode}: ${failed} connects failed, ${ready()} of ${peers} ready`);
  const m2 = sample();

  // BEAT_INTERVALS heartbeat intervals and a timeout past the last peer's ready: every peer pings at least BEAT_INTERVALS times.
  const startBeat = process.hrtime.bigint();
  const cpuBeat = process.cpuUsage();
  const samplesBefore = rttSamples();
  const pingsBefore = stats.pings;
  await clock.advance(BEAT_INTERVALS * HEARTBEAT.intervalMs + HEARTBEAT.timeoutMs);
  const heartbeatMs = msSince(startBeat);
  const heartbeatCpuMs = cpuMs(cpuBeat);
  const pingsAnswered = stats.pings - pingsBefore;
  const samples = rttSamples() - samplesBefore;
  if (pingsAnswered < BEAT_INTERVALS * peers || samples < BEAT_INTERVALS * peers) {
    throw new Error(`${mode}: heartbeats did not run: ${pingsAnswered} pings answered, ${samples} RTT samples for ${peers} peers`);
  }
  if (ready() !== peers || stats.connections !== peers) {
    throw new Error(`${mode}: after heartbeats ${ready()} peers ready, ${stats.connections} connections open, expected ${peers}`);
  }
  const m3 = sample();
  const maxRss = process.resourceUsage().maxRSS * 1024;
  return {
    mode,
    peers,
    m0,
    m1,
    m2,
    m3,
    maxRss,
    connectMs,
    heartbeatMs,
    connectCpuMs,
    heartbeatCpuMs,
    pingsAnswered,
    rttSamples: samples,
    ready: ready(),
    virtualMs: clock.now(),
  };
}

function runChild(peers: number, mode: Mode, nodeFlags: readonly string[]): Promise<MemoryResult> {
  const script = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    // Compiled (npm run build: dist/bench/memory.js) the child runs as plain JavaScript; from source, through tsx.
    const loader = script.endsWith('.ts') ? ['--import', 'tsx'] : [];
    const proc = spawn(process.execPath, ['--expose-gc', ...nodeFlags, ...loader, script, '--peers', String(peers), '--mode', mode], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (chunk: string) => {
      out += chunk;
    });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`memory child (${mode}, ${peers} peers) took longer than ${CHILD_TIMEOUT_MS / 1000} s`));
    }, CHILD_TIMEOUT_MS);
    proc.on('close', (code) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
      if (code !== 0 || line === undefined) {
        reject(new Error(`memory child (${mode}, ${peers} peers) exited with ${code}:\n${out}`));
        return;
      }
      resolve(JSON.parse(line.slice(RESULT_PREFIX.length)) as MemoryResult);
    });
  });
}

export interface MemoryRow {
  readonly peers: number;
  readonly engine: MemoryResult;
  readonly transport: MemoryResult;
  /** Process RSS growth per peer, engine mode, m0 -> m3. */
  readonly rssPerPeer: number;
  /** Heap growth per peer, engine mode, m0 -> m3 (responders, network, hub). */
  readonly heapPerPeer: number;
  /** Heap growth per peer of the hub side, engine mode, m1 -> m3 (hub engine + connection objects). */
  readonly hubSidePerPeer: number;
  /** Hub engine heap per peer: engine-mode hub side minus transport-mode hub side. */
  readonly enginePerPeer: number;
  /** RSS per peer the engine adds: engine-mode RSS minus transport-mode RSS, both after heartbeats. */
  readonly engineRssPerPeer: number;
  /** Whole process (hub, network and the simulated remotes) within 1 GiB, settled and at peak. */
  readonly fitsGoal: boolean;
  /** Process RSS less what the simulated remotes and the network add (transport-mode growth): the hub alone, estimated. */
  readonly hubOnlyRss: number;
  /**
   * Heartbeat CPU per peer per interval (one ping out, its pong back, the
   * timers around it), whole process, engine mode; microseconds.
   */
  readonly usPerPeerInterval: number;
  /** The same with the transport-only hub: the memory network's raw control-message round trip (the baseline). */
  readonly transportUsPerPeerInterval: number;
  /** Engine mode over transport mode, both measured in this run. */
  readonly heartbeatRatio: number;
  /** Engine mode minus transport mode: what the hub engine itself spends per peer per interval (noisy near 0). */
  readonly engineUsPerPeerInterval: number;
  /** The engine-mode process as a whole (an upper bound of the engine's share) is within HEARTBEAT_GOAL_US. */
  readonly heartbeatGoalMet: boolean;
  /** CPU cores the hub engine needs to keep `peers` heartbeating at the interval in real time. */
  readonly heartbeatCores: number;
}

function row(engine: MemoryResult, transport: MemoryResult): MemoryRow {
  const n = engine.peers;
  const hubSide = engine.m3.heapUsed - engine.m1.heapUsed;
  const wireSide = transport.m3.heapUsed - transport.m1.heapUsed;
  const engineUs = (engine.heartbeatCpuMs * 1000) / engine.pingsAnswered;
  const transportUs = (transport.heartbeatCpuMs * 1000) / transport.pingsAnswered;
  return {
    peers: n,
    engine,
    transport,
    rssPerPeer: (engine.m3.rss - engine.m0.rss) / n,
    heapPerPeer: (engine.m3.heapUsed - engine.m0.heapUsed) / n,
    hubSidePerPeer: hubSide / n,
    enginePerPeer: (hubSide - wireSide) / n,
    engineRssPerPeer: (engine.m3.rss - transport.m3.rss) / n,
    fitsGoal: engine.m3.rss <= GOAL_BYTES && engine.maxRss <= GOAL_BYTES,
    hubOnlyRss: engine.m3.rss - (transport.m3.rss - transport.m0.rss),
    usPerPeerInterval: engineUs,
    transportUsPerPeerInterval: transportUs,
    heartbeatRatio: engineUs / transportUs,
    engineUsPerPeerInterval: engineUs - transportUs,
    heartbeatGoalMet: engineUs <= HEARTBEAT_GOAL_US,
    heartbeatCores: (n / (HEARTBEAT.intervalMs / 1000)) * ((engineUs - transportUs) / 1e6),
  };
}

/** `nodeFlags`: extra options for both children's node (V8 heap flags), e.g. `--max-old-space-size=1024`. */
export async function memoryBench(sizes: readonly number[], nodeFlags: readonly string[] = []): Promise<MemoryRow[]> {
  say(`memory: one hub, N ready idle peers, heartbeat ${HEARTBEAT.intervalMs / 1000} s (timeout ${HEARTBEAT.timeoutMs / 1000} s), idle timeout off`);
  const rows: MemoryRow[] = [];
  for (const peers of sizes) {
    const engine = await runChild(peers, 'engine', nodeFlags);
    const transport = await runChild(peers, 'transport', nodeFlags);
    const r = row(engine, transport);
    rows.push(r);
    say(`  ${int(peers)} peers (engine hub; transport-only hub in brackets)`);
    say(
      `    connect ${(engine.connectMs / 1000).toFixed(1)} s (CPU ${(engine.connectCpuMs / 1000).toFixed(1)} s) [${(transport.connectMs / 1000).toFixed(1)} s], ` +
        `${BEAT_INTERVALS} heartbeat intervals ${(engine.heartbeatMs / 1000).toFixed(1)} s [${(transport.heartbeatMs / 1000).toFixed(1)} s]: ` +
        `${int(engine.pingsAnswered)} pings answered, ${int(engine.rttSamples)} RTT samples, ${int(engine.ready)} peers still ready`,
    );
    say(
      `    RSS ${mib(engine.m0.rss)} -> ${mib(engine.m3.rss)}, peak ${mib(engine.maxRss)} ` +
        `[${mib(transport.m0.rss)} -> ${mib(transport.m3.rss)}, peak ${mib(transport.maxRss)}]`,
    );
    say(
      `    heap used ${mib(engine.m0.heapUsed)} -> remotes listening ${mib(engine.m1.heapUsed)} -> all ready ${mib(engine.m2.heapUsed)} ` +
        `-> after heartbeats ${mib(engine.m3.heapUsed)} (V8 holds ${mib(engine.m3.heapTotal)}) [${mib(transport.m3.heapUsed)}]`,
    );
    say(
      `    per peer: process RSS ${int(r.rssPerPeer)} B, heap ${int(r.heapPerPeer)} B (remotes ${int((engine.m1.heapUsed - engine.m0.heapUsed) / peers)} B, ` +
        `hub side ${int(r.hubSidePerPeer)} B); hub engine alone: heap ${int(r.enginePerPeer)} B, RSS ${int(r.engineRssPerPeer)} B`,
    );
    say(
      `    heartbeat CPU per peer per interval (one ping round trip): engine hub ${r.usPerPeerInterval.toFixed(2)} us, ` +
        `transport-only hub (the memory network's raw ping/pong, baseline) ${r.transportUsPerPeerInterval.toFixed(2)} us: ` +
        `ratio ${r.heartbeatRatio.toFixed(2)}x; the hub engine's own share ${r.engineUsPerPeerInterval.toFixed(2)} us ` +
        `(${(engine.heartbeatCpuMs / 1000).toFixed(2)} s CPU [${(transport.heartbeatCpuMs / 1000).toFixed(2)} s] for ` +
        `${int(engine.pingsAnswered)} [${int(transport.pingsAnswered)}] round trips in ${(BEAT_INTERVALS * HEARTBEAT.intervalMs + HEARTBEAT.timeoutMs) / 1000} s virtual); ` +
        `${int(peers)} peers at one ping per ${HEARTBEAT.intervalMs / 1000} s need ${r.heartbeatCores.toFixed(3)} cores of the engine's own`,
    );
    if (peers >= 100_000) {
      say(
        `    goal heartbeat CPU <= ${HEARTBEAT_GOAL_US} us per peer per interval at ${int(peers)} peers: ` +
          `${r.heartbeatGoalMet ? 'MET' : 'NOT MET'} (${r.usPerPeerInterval.toFixed(2)} us for the whole engine-mode process, ` +
          `remotes and network included; the engine's own share ${r.engineUsPerPeerInterval.toFixed(2)} us)`,
      );
    }
    if (peers >= 100_000) {
      say(
        `    goal ${int(peers)} peers within 1 GiB RSS: ${r.fitsGoal ? 'MET' : 'NOT MET'} ` +
          `(process ${mib(engine.m3.rss)}, peak ${mib(engine.maxRss)}; hub alone, less the simulated remotes: ${mib(r.hubOnlyRss)})`,
      );
    }
  }
  return rows;
}

const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) {
  const argv = process.argv.slice(2);
  if (argv.includes('--peers')) {
    const peers = numberArg('peers', 10_000);
    const mode: Mode = argv.includes('transport') ? 'transport' : 'engine';
    const result = await child(peers, mode);
    say(`${RESULT_PREFIX}${JSON.stringify(result)}`);
    // Nothing may keep the child alive: the engine's timers are on the virtual clock.
    process.exit(0);
  } else {
    const sizesArg = argv.find((a, i) => argv[i - 1] === '--sizes') ?? '10000,100000';
    const sizes = sizesArg.split(',').map((s) => Number(s.replace(/_/g, '')));
    const flagsArg = argv.find((a, i) => argv[i - 1] === '--node-flags') ?? '';
    const nodeFlags = flagsArg.split(' ').filter((f) => f.length > 0);
    if (nodeFlags.length > 0) say(`  children run with node ${nodeFlags.join(' ')}`);
    const rows = await memoryBench(sizes, nodeFlags);
    say(`${RESULT_PREFIX}${JSON.stringify({ bench: 'memory', rows })}`);
  }
}
