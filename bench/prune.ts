/**
 * Admission at the connection limit: a hub at `maxConnections`, every peer
 * idle, admits new peers one after another, each pruning the least recently
 * used idle peer of lowest priority. Measured for a small and a large
 * registry in one run: the choice is made from an index kept as machines
 * change state, so the cost per admission must not grow with the registry
 * (scanning it grew linearly: about 40 ms per admission at 20,000 peers),
 * and must not grow with the admissions either (a Set taken from the front
 * keeps holes that iteration walks).
 *
 *   npx tsx bench/prune.ts                        # 1,000 and 20,000 peers
 *   npx tsx bench/prune.ts --small 500 --large 5000 --admissions 100
 */
import { MemoryNetwork, VirtualClock } from '../adapters/memory/index.js';
import { createEngine } from '../runtime/index.js';
import { RESULT_PREFIX, drive, int, msSince, numberArg, say } from './common.js';
import { respond, type ResponderStats } from './responder.js';

export interface PruneReport {
  readonly small: number;
  readonly large: number;
  readonly admissions: number;
  /** Wall ms per admission (prune one, dial, hello) at each size. */
  readonly msSmall: number;
  readonly msLarge: number;
  readonly ratio: number;
  readonly goal: number;
}

const small = numberArg('small', 1_000);
const large = numberArg('large', 20_000);
const admissions = numberArg('admissions', 2_000);
const GOAL = 2;

async function measure(peers: number): Promise<number> {
  const clock = new VirtualClock();
  const network = new MemoryNetwork({ clock, latencyMs: 1 });
  const stats: ResponderStats = { hellos: 0, pings: 0, connections: 0 };
  for (let i = 0; i < peers + admissions; i++) await respond(network.node(`p${i}`), stats);
  const hub = createEngine({
    adapter: network.node('hub'),
    clock,
    trace: false,
    heartbeat: { intervalMs: 3_600_000, timeoutMs: 1_000, misses: 3 },
    idleTimeoutMs: Infinity,
    maxConnections: peers,
    dialConcurrency: 1_000,
    dialQueueLimit: Infinity,
  });
  await hub.start();
  for (let i = 0; i < peers + admissions; i++) hub.addPeer(`p${i}`, [network.address(`p${i}`)]);
  // Fill the registry with idle peers, a thousand at a time; every tenth is tagged higher.
  for (let i = 0; i < peers; i += 1_000) {
    let done = 0;
    const batch = Math.min(1_000, peers - i);
    for (let j = i; j < i + batch; j++) {
      if (j % 10 === 0) hub.tagPeer(`p${j}`, 'keep', 1);
      void hub.withConnection(`p${j}`, () => undefined).then(() => (done += 1));
    }
    await drive(clock, () => done === batch, `filling ${peers}`, 1);
  }
  const started = process.hrtime.bigint();
  for (let i = peers; i < peers + admissions; i++) {
    let done = false;
    void hub.withConnection(`p${i}`, () => undefined).then(() => (done = true));
    await drive(clock, () => done, `admission ${i}`, 1);
  }
  const ms = msSince(started) / admissions;
  if (hub.metrics().pruned !== admissions) throw new Error(`pruned ${hub.metrics().pruned}, expected ${admissions}`);
  const stopping = hub.stop({ force: true });
  let stopped = false;
  void stopping.then(() => (stopped = true));
  await drive(clock, () => stopped, 'stop', 1);
  return ms;
}

say(`pruning at the connection limit: ${int(admissions)} admissions into a full registry of ${int(small)}, then ${int(large)} idle peers`);
// A first round only warms the JIT up, so the two sizes compare like for like.
await measure(small);
const msSmall = await measure(small);
say(`  ${int(small).padStart(7)} peers: ${msSmall.toFixed(3)} ms per admission (prune, dial, hello)`);
const msLarge = await measure(large);
say(`  ${int(large).padStart(7)} peers: ${msLarge.toFixed(3)} ms per admission`);
const ratio = msLarge / msSmall;
say(`  large/small ${ratio.toFixed(2)}x  goal <= ${GOAL}x (constant time): ${ratio <= GOAL ? 'MET' : 'NOT MET'}`);
const report: PruneReport = { small, large, admissions, msSmall, msLarge, ratio, goal: GOAL };
say(`${RESULT_PREFIX}${JSON.stringify(report)}`);
