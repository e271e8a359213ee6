import { strict as assert } from 'node:assert';
import { report, runCoverage, untaken, type CoverageRun } from './coverage.js';
import { walks } from './walks.js';
import { definedTransitions } from './transitions.js';
import { forgetModelStates } from './paths.js';

/**
 * Model-based tests generated from the peer connection machine (see
 * docs/TESTING.md): paths from `xstate/graph` that together take every
 * transition the machine defines, each driven on a real engine over the
 * in-memory network and checked against the model after every step.
 */
describe('model: generated paths over the peer connection machine', function () {
  this.timeout(180_000);
  let run: CoverageRun | undefined;
  const ensure = async (): Promise<CoverageRun> => (run ??= await runCoverage());
  // The explored model graph is large (hundreds of MB); the rest of the suite does not need it.
  after(() => {
    run = undefined;
    forgetModelStates();
  });

  it('drives the engine along every generated path and matches the model after every step', async () => {
    const r = await ensure();
    assert.ok(r.plan.paths.length > 0, 'no path was generated');
    const failed = r.results.filter((x) => x.error !== undefined);
    assert.deepEqual(failed.map((x) => x.error!.message), []);
    assert.deepEqual(r.plan.unreachable, [], 'transitions the model cannot reach');
  });

  for (const t of definedTransitions()) {
    it(`takes ${t.key} (${t.target}${t.guard === '' ? '' : `, guard ${t.guard}`})`, async () => {
      const r = await ensure();
      if ((r.recorder.taken.get(t.key) ?? 0) > 0) return;
      const planned = r.results.find((x) => x.path.covers.includes(t.key));
      assert.fail(
        planned === undefined
          ? `${t.key} is never taken and no generated path reaches it in the model`
          : `${t.key} is never taken; ${planned.error?.message ?? `path ${planned.index + 1} passed without taking it`}`,
      );
    });
  }

  it('prints the coverage report; every defined transition is taken', async () => {
    const r = await ensure();
    console.log(report(r));
    assert.deepEqual(
      untaken(r).map((t) => t.key),
      [],
    );
  });
});

describe('model: random walks over the model', function () {
  this.timeout(120_000);

  it('60 seeded walks of up to 40 steps: the engine matches the model after every step', async () => {
    const results = await walks({ count: 60, length: 40, seed: 1 });
    const failed = results.filter((r) => r.error !== undefined);
    assert.deepEqual(failed.map((r) => r.error!.message), []);
    // A walk ends early only when the engine has stopped; most run their full length.
    const steps = results.reduce((n, r) => n + r.steps, 0);
    assert.ok(steps > (60 * 40) / 2, `only ${steps} steps walked`);
  });
});
