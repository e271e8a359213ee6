import { strict as assert } from 'node:assert';
import { createEngine, DEFAULTS, resolveOptions } from '../../runtime/index.js';
import { MemoryNetwork, VirtualClock } from '../../adapters/memory/index.js';

describe('engine options', () => {
  it('defaults are documented values', () => {
    const o = resolveOptions();
    assert.equal(o.dialConcurrency, 50);
    assert.equal(o.dialQueueLimit, 500);
    assert.equal(o.maxStreamsPerConnection, 100);
    assert.deepEqual(o.heartbeat, DEFAULTS.heartbeat);
    assert.deepEqual(o.retry, { strategy: 'none' });
  });

  it('merges partial heartbeat settings over the defaults', () => {
    const o = resolveOptions({ heartbeat: { misses: 5 } });
    assert.equal(o.heartbeat.misses, 5);
    assert.equal(o.heartbeat.intervalMs, DEFAULTS.heartbeat.intervalMs);
  });

  it('throws a RangeError naming the bad field', () => {
    assert.throws(() => resolveOptions({ connectTimeoutMs: 0 }), /connectTimeoutMs/);
    assert.throws(() => resolveOptions({ connectTimeoutMs: Infinity }), /connectTimeoutMs/);
    assert.throws(() => resolveOptions({ heartbeat: { intervalMs: 1000, timeoutMs: 1000 } }), /heartbeat\.timeoutMs/);
    assert.throws(() => resolveOptions({ maxQueuedPerPeer: 1.5 }), /maxQueuedPerPeer/);
    assert.doesNotThrow(() => resolveOptions({ idleTimeoutMs: Infinity }));
  });

  it('createEngine refuses a missing adapter and a pinned policy that never waits', () => {
    assert.throws(() => createEngine({} as never), /adapter/);
    const network = new MemoryNetwork({ clock: new VirtualClock() });
    assert.throws(() => createEngine({ adapter: network.node('x'), pinnedRetry: { strategy: 'none' } }), /pinnedRetry/);
  });
});
