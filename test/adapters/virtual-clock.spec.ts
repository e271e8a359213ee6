import { strict as assert } from 'node:assert';
import { VirtualClock } from '../../adapters/memory/index.js';

describe('VirtualClock', () => {
  it('fires timers in time order, same-time timers in the order set', async () => {
    const clock = new VirtualClock();
    const fired: string[] = [];
    clock.setTimeout(() => fired.push('b@20'), 20);
    clock.setTimeout(() => fired.push('a@10'), 10);
    clock.setTimeout(() => fired.push('c@20'), 20);
    await clock.advance(15);
    assert.deepEqual(fired, ['a@10']);
    assert.equal(clock.now(), 15);
    await clock.advance(5);
    assert.deepEqual(fired, ['a@10', 'b@20', 'c@20']);
    assert.equal(clock.pending(), 0);
  });

  it('fires timers set while advancing when they fall due in the window, with promises settled between', async () => {
    const clock = new VirtualClock();
    const fired: number[] = [];
    clock.setTimeout(() => {
      fired.push(clock.now());
      void Promise.resolve().then(() => clock.setTimeout(() => fired.push(clock.now()), 5));
    }, 10);
    await clock.advance(20);
    assert.deepEqual(fired, [10, 15]);
  });

  it('fires the timers due at one instant in one round, then promise callbacks, then what they set for that instant', async () => {
    const clock = new VirtualClock();
    const log: string[] = [];
    const first = (): void => {
      log.push('a');
      void Promise.resolve().then(() => {
        log.push('a.then');
        clock.setTimeout(() => log.push('c (set by a.then, due now)'), 0);
      });
      clock.setTimeout(() => log.push('d (set by a, due now)'), 0);
    };
    clock.setTimeout(first, 10);
    clock.setTimeout(() => log.push('b'), 10);
    await clock.advance(10);
    assert.deepEqual(log, ['a', 'b', 'a.then', 'd (set by a, due now)', 'c (set by a.then, due now)']);
    assert.equal(clock.now(), 10);
    assert.equal(clock.pending(), 0);
  });

  it('a timer cleared by an earlier timer of the same round does not fire', async () => {
    const clock = new VirtualClock();
    const fired: string[] = [];
    let second: unknown;
    clock.setTimeout(() => {
      fired.push('first');
      clock.clearTimeout(second);
    }, 5);
    second = clock.setTimeout(() => fired.push('second'), 5);
    await clock.advance(5);
    assert.deepEqual(fired, ['first']);
    assert.equal(clock.pending(), 0);
  });

  it('a timer set during a round that compacts the heap leaves the rest of the round intact', async () => {
    const clock = new VirtualClock();
    const fired: string[] = [];
    clock.setTimeout(() => {
      fired.push('a');
      // The heap holds far more cleared timers than live ones: this one rebuilds it.
      clock.setTimeout(() => fired.push('x'), 0);
    }, 10);
    clock.setTimeout(() => fired.push('b'), 10);
    clock.setTimeout(() => fired.push('c'), 10);
    const dead = Array.from({ length: 2000 }, () => clock.setTimeout(() => fired.push('dead'), 100));
    for (const handle of dead) clock.clearTimeout(handle);
    await clock.advance(10);
    assert.deepEqual(fired, ['a', 'b', 'c', 'x']);
    assert.equal(clock.pending(), 0);
  });

  it('cleared and infinite timers never fire', async () => {
    const clock = new VirtualClock();
    let fired = 0;
    const t = clock.setTimeout(() => fired++, 10);
    clock.setTimeout(() => fired++, Infinity);
    clock.clearTimeout(t);
    assert.equal(clock.pending(), 0);
    await clock.advance(1e9);
    assert.equal(fired, 0);
  });

  it('stays correct when many cleared timers are compacted away', async () => {
    const clock = new VirtualClock();
    let fired = 0;
    for (let i = 0; i < 5000; i++) clock.clearTimeout(clock.setTimeout(() => fired++, 100 + i));
    clock.setTimeout(() => fired++, 50);
    assert.equal(clock.pending(), 1);
    await clock.advance(10_000);
    assert.equal(fired, 1);
  });
});
