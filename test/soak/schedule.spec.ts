/**
 * The chaos soak's fault schedule: a seed gives one schedule, always the
 * same; faults stay inside the run and leave enough engines up.
 */
import assert from 'node:assert/strict';
import { FAULT_KINDS, countByKind, describeFault, generateSchedule, scheduleHash, type Fault } from '../../soak/schedule.js';

const TEN_MINUTES = 10 * 60_000;
const STOP_BOUND = 3800;

function endOf(fault: Fault): number {
  switch (fault.kind) {
    case 'restart':
      return fault.at + STOP_BOUND + fault.downMs + 1000;
    case 'partition':
    case 'loss':
    case 'delay':
      return fault.at + fault.forMs;
    default:
      return fault.at;
  }
}

describe('soak fault schedule (soak/schedule.ts)', function () {
  it('the same seed gives the same schedule and hash; another seed another one', function () {
    const a = generateSchedule({ seed: 7, engines: 5, durationMs: 60_000, stopBoundMs: STOP_BOUND });
    const b = generateSchedule({ seed: 7, engines: 5, durationMs: 60_000, stopBoundMs: STOP_BOUND });
    const c = generateSchedule({ seed: 8, engines: 5, durationMs: 60_000, stopBoundMs: STOP_BOUND });
    assert.ok(a.length >= 15, `faults in 60 s: ${a.length}`);
    assert.deepEqual(a, b);
    assert.equal(scheduleHash(a), scheduleHash(b));
    assert.match(scheduleHash(a), /^[0-9a-f]{16}$/);
    assert.notDeepEqual(a, c);
    assert.notEqual(scheduleHash(a), scheduleHash(c));
    assert.deepEqual(
      a.map((f) => describeFault(f)),
      b.map((f) => describeFault(f)),
    );
  });

  it('every fault starts and ends inside the run, in time order, between two distinct engines', function () {
    for (const seed of [1, 2, 3, 42]) {
      const faults = generateSchedule({ seed, engines: 5, durationMs: TEN_MINUTES, stopBoundMs: STOP_BOUND });
      let last = 0;
      for (const fault of faults) {
        assert.ok(fault.at >= last, `seed ${seed}: out of order at ${fault.at}`);
        last = fault.at;
        assert.ok(endOf(fault) <= TEN_MINUTES - 500, `seed ${seed}: ${describeFault(fault)} ends at ${endOf(fault)}`);
        if ('a' in fault) assert.notEqual(fault.a, fault.b);
        if ('from' in fault) assert.notEqual(fault.from, fault.to);
        for (const engine of 'engine' in fault ? [fault.engine] : 'a' in fault ? [fault.a, fault.b] : [fault.from, fault.to]) {
          assert.ok(Number.isInteger(engine) && engine >= 0 && engine < 5);
        }
        if (fault.kind === 'loss') assert.ok(fault.probability >= 0.05 && fault.probability <= 0.4);
      }
      const byKind = countByKind(faults);
      for (const kind of FAULT_KINDS) assert.ok(byKind[kind] > 0, `seed ${seed}: no ${kind} in ten minutes`);
    }
  });

  it('keeps at most two of five engines down at once, and never restarts an engine that is down', function () {
    const faults = generateSchedule({ seed: 5, engines: 5, durationMs: TEN_MINUTES, stopBoundMs: STOP_BOUND });
    const restarts = faults.filter((f): f is Extract<Fault, { kind: 'restart' }> => f.kind === 'restart');
    assert.ok(restarts.length >= 20, `restarts: ${restarts.length}`);
    let mostDown = 0;
    for (const r of restarts) {
      const overlapping = restarts.filter((o) => o.at <= r.at && endOf(o) > r.at);
      assert.equal(new Set(overlapping.map((o) => o.engine)).size, overlapping.length, `engine restarted while down at ${r.at}`);
      mostDown = Math.max(mostDown, overlapping.length);
    }
    assert.ok(mostDown <= 2, `engines down at once: ${mostDown}`);
    // With two engines, one at a time.
    const pair = generateSchedule({ seed: 5, engines: 2, durationMs: TEN_MINUTES, stopBoundMs: STOP_BOUND }).filter((f) => f.kind === 'restart');
    for (const r of pair) assert.equal(pair.filter((o) => o.at <= r.at && endOf(o) > r.at).length, 1);
  });

  it('refuses fewer than two engines and a run of no length', function () {
    assert.throws(() => generateSchedule({ seed: 1, engines: 1, durationMs: 1000, stopBoundMs: 0 }), RangeError);
    assert.throws(() => generateSchedule({ seed: 1, engines: 3, durationMs: 0, stopBoundMs: 0 }), RangeError);
  });

  it('describes each kind of fault in one line', function () {
    assert.equal(describeFault({ at: 12_340, kind: 'partition', a: 1, b: 3, forMs: 3100 }), '  12.3s  partition e2|e4 for 3.1s');
    assert.equal(describeFault({ at: 500, kind: 'restart', engine: 0, downMs: 2000, force: true }), '   0.5s  restart e1 (force stop), down 2.0s');
    assert.equal(describeFault({ at: 1000, kind: 'loss', a: 0, b: 1, probability: 0.25, forMs: 2000 }), '   1.0s  loss 25% e1|e2 for 2.0s');
    assert.equal(describeFault({ at: 1000, kind: 'delay', a: 0, b: 1, delayMs: 80, forMs: 2000 }), '   1.0s  delay 80ms e1|e2 for 2.0s');
    assert.equal(describeFault({ at: 1000, kind: 'drain', from: 2, to: 0 }), '   1.0s  e3 drains its connection to e1');
    assert.equal(describeFault({ at: 1000, kind: 'forceClose', from: 2, to: 0 }, (i) => `n${i}`), '   1.0s  n2 force closes its connection to n0');
  });
});
