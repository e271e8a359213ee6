import { strict as assert } from 'node:assert';
import { tmpdir } from 'node:os';
import sinon from 'sinon';
import { Engine } from '../../runtime/index.js';
import { failureReport } from '../../sim/cli.js';
import { runSeeds, type SeedOutcome } from '../../sim/pool.js';
import { encode, generate, load } from '../../sim/schedule.js';
import { shrink } from '../../sim/shrink.js';
import { simulate, type World } from '../../sim/world.js';

/**
 * The deterministic simulator (sim/) in the test suite: many seeds of a few
 * thousand random operations each, every invariant checked after every step;
 * the trace is the same byte for byte for the same seed; and a failure is
 * reported with its invariant, the trace tail and a shrunk schedule.
 */
const SEEDS = 200;
const PEERS = 5;
const STEPS = 2_000;

describe(`simulation: ${SEEDS} seeds of ${STEPS} steps over ${PEERS} peers`, function () {
  this.timeout(600_000);
  let outcomes: Map<number, SeedOutcome> | undefined;
  const ensure = async (): Promise<Map<number, SeedOutcome>> => {
    if (outcomes === undefined) {
      const seeds = Array.from({ length: SEEDS }, (_, i) => i + 1);
      const list = await runSeeds({ seeds, peers: PEERS, steps: STEPS });
      outcomes = new Map(list.map((o) => [o.seed, o]));
    }
    return outcomes;
  };

  it('runs every seed (on every core)', async () => {
    const all = await ensure();
    assert.equal(all.size, SEEDS);
    const totals = [...all.values()].reduce(
      (t, o) => ({ steps: t.steps + o.executed, requests: t.requests + o.stats.requests, ok: t.ok + o.stats.ok, ms: t.ms + o.ms }),
      { steps: 0, requests: 0, ok: 0, ms: 0 },
    );
    console.log(
      `      ${SEEDS} seeds: ${totals.steps} steps, ${totals.requests} requests (${totals.ok} ok), ${Math.round(totals.ms / SEEDS)} ms per seed`,
    );
    // The runs do real work: plenty of streams succeed under the faults.
    assert.ok(totals.ok > totals.requests / 8, `only ${totals.ok} of ${totals.requests} requests succeeded`);
  });

  for (let seed = 1; seed <= SEEDS; seed++) {
    it(`seed ${seed} keeps every invariant`, async () => {
      const o = (await ensure()).get(seed);
      assert.ok(o !== undefined, `seed ${seed} did not run`);
      if (o.violation === undefined) return;
      assert.fail(
        `${o.violation.invariant} at step ${o.violation.step} (t=${o.violation.at}): ${o.violation.message}\n` +
          `trace tail:\n  ${o.tail.join('\n  ')}\n` +
          `rerun (and shrink): npx tsx sim/cli.ts --seed ${seed} --peers ${PEERS} --steps ${STEPS}`,
      );
    });
  }
});

describe('simulation: determinism and failure reports', function () {
  this.timeout(120_000);

  afterEach(() => sinon.restore());

  it('the same seed gives a byte-identical trace', async () => {
    const schedule = generate(42, 8, 1_500);
    const first = await simulate(schedule);
    const second = await simulate(generate(42, 8, 1_500));
    assert.equal(first.violation, undefined, first.violation?.message);
    assert.ok(first.trace.length > 1_500, 'the trace has a line per step and more');
    assert.equal(second.trace.join('\n'), first.trace.join('\n'));
    assert.equal(second.traceHash, first.traceHash);
    const other = await simulate(generate(43, 8, 1_500));
    assert.notEqual(other.traceHash, first.traceHash, 'another seed gives another run');
  });

  it('a failing run names the invariant, shows the trace tail, and shrinks to a schedule that still fails', async () => {
    const invariant = {
      name: 'no-force-closed-answers',
      check: (w: World) => ((w.stats.failed.CONNECTION_FORCE_CLOSED ?? 0) > 0 ? 'a request was answered CONNECTION_FORCE_CLOSED' : null),
    };
    const failing = await simulate(generate(3, 5, 2_000), { invariants: [invariant] });
    assert.equal(failing.violation?.invariant, 'no-force-closed-answers');
    const shrunk = await shrink(failing, { invariants: [invariant], budgetMs: 30_000 });
    assert.equal(shrunk.result.violation?.invariant, 'no-force-closed-answers');
    assert.ok(shrunk.schedule.steps.length <= 5, `shrunk to ${shrunk.schedule.steps.length} steps`);
    // The shrunk schedule, written out and read back, fails the same way.
    const again = await simulate(load(encode(shrunk.schedule)), { invariants: [invariant] });
    assert.equal(again.violation?.invariant, 'no-force-closed-answers');
    const text = await failureReport(failing, {
      shrinkSeconds: 30,
      out: tmpdir(),
      command: 'npx tsx sim/cli.ts --seed 3 --peers 5 --steps 2000',
      sim: { invariants: [invariant] },
    });
    assert.match(text, /INVARIANT BROKEN: no-force-closed-answers at step \d+/);
    assert.match(text, /trace tail:\n {2}\s*\S/);
    assert.match(text, /rerun shrunk: npx tsx sim\/cli\.ts --schedule \S+ --peers 5/);
  });

  it('the registry invariant fails when a node shows a peer twice', async () => {
    const real = Engine.prototype.snapshot;
    sinon.stub(Engine.prototype, 'snapshot').callsFake(function (this: Engine) {
      const snapshot = real.call(this);
      return snapshot.peers.length === 0 ? snapshot : { ...snapshot, peers: [...snapshot.peers, snapshot.peers[0]!] };
    });
    const result = await simulate(generate(1, 4, 300));
    assert.equal(result.violation?.invariant, 'one-entry-per-machine');
  });

  it('the stream-count invariant fails when one side of a quiet connection counts a stream too many', async () => {
    const real = Engine.prototype.snapshot;
    sinon.stub(Engine.prototype, 'snapshot').callsFake(function (this: Engine) {
      const snapshot = real.call(this);
      if (this.peerId !== 'n00') return snapshot;
      return { ...snapshot, peers: snapshot.peers.map((p) => (p.state === 'ready' ? { ...p, streams: p.streams + 1 } : p)) };
    });
    const result = await simulate(generate(1, 4, 600));
    assert.equal(result.violation?.invariant, 'stream-counts-agree');
  });

  it('the clean-stop invariant fails when a stopped engine still owes answers', async () => {
    const real = Engine.prototype.metrics;
    sinon.stub(Engine.prototype, 'metrics').callsFake(function (this: Engine) {
      const metrics = real.call(this);
      return this.status === 'stopped' ? { ...metrics, pendingRequests: 1 } : metrics;
    });
    const result = await simulate(generate(1, 4, 300));
    assert.equal(result.violation?.invariant, 'clean-stop');
  });
});
