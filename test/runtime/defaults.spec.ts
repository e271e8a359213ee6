import { strict as assert } from 'node:assert';
import { createEngine, DEFAULTS, resolveOptions } from '../../runtime/index.js';
import { MemoryNetwork, VirtualClock } from '../../adapters/memory/index.js';
import { DEFAULT_TRANSPORT_POLICY } from '../../adapters/quic/index.js';
import { connectionMachine } from '../../machines/index.js';
import { TIMING_DEFAULTS, WIRE_DEFAULTS, transportPolicyOf } from '../../protocol/timing.js';

describe('engine options', () => {
  it('defaults are documented values', () => {
    const o = resolveOptions();
    assert.equal(o.dialConcurrency, 50);
    assert.equal(o.dialQueueLimit, 500);
    assert.equal(o.maxStreamsPerConnection, 100);
    assert.deepEqual(o.heartbeat, DEFAULTS.heartbeat);
    assert.deepEqual(o.retry, { strategy: 'none' });
  });

  it('the engine, the machine and the QUIC adapter read their timings from one table (the heartbeat: engine and QUIC)', () => {
    const t = TIMING_DEFAULTS;
    const o = resolveOptions();
    assert.deepEqual(
      [o.connectTimeoutMs, o.dialQueueTimeoutMs, o.handshakeTimeoutMs, o.streamOpenTimeoutMs, o.idleTimeoutMs, o.drainDeadlineMs, o.forceCloseGraceMs],
      [t.connectTimeoutMs, t.dialQueueTimeoutMs, t.handshakeTimeoutMs, t.streamOpenTimeoutMs, t.idleTimeoutMs, t.drainDeadlineMs, t.forceCloseGraceMs],
    );
    assert.deepEqual(o.heartbeat, t.heartbeat);
    assert.equal(o.pinnedRestartIntensity.periodMs, t.restartPeriodMs);
    assert.equal(o.dialStaggerMs, t.dialStaggerMs);
    assert.equal(o.maxProtocolLength, WIRE_DEFAULTS.maxProtocolLength);
    assert.equal(o.maxInboundStreamsPerConnection, WIRE_DEFAULTS.maxInboundStreamsPerConnection);
    const delays = connectionMachine.implementations.delays;
    assert.deepEqual(
      [delays.connectTimeout, delays.dialQueueTimeout, delays.handshakeTimeout, delays.streamOpenTimeout, delays.idleTimeout, delays.drainDeadline, delays.forceCloseGrace],
      [t.connectTimeoutMs, t.dialQueueTimeoutMs, t.handshakeTimeoutMs, t.streamOpenTimeoutMs, t.idleTimeoutMs, t.drainDeadlineMs, t.forceCloseGraceMs],
    );
    assert.equal(delays.restartPeriod, t.restartPeriodMs);
    assert.deepEqual(DEFAULT_TRANSPORT_POLICY, transportPolicyOf(o));
    assert.equal(DEFAULT_TRANSPORT_POLICY.heartbeatMisses, o.heartbeat.misses);
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

  it('the lifecycle options: defaults, partial merge, and a RangeError naming the bad field', () => {
    const o = resolveOptions();
    assert.equal(o.dialStaggerMs, 250);
    assert.equal(o.addressOrder, 'interleave');
    assert.deepEqual(o.pinnedRestartIntensity, { maxRestarts: Infinity, periodMs: 60_000 });
    assert.equal(o.dialBackoff.strategy, 'exponential');
    assert.deepEqual(resolveOptions({ pinnedRestartIntensity: { maxRestarts: 3 } }).pinnedRestartIntensity, { maxRestarts: 3, periodMs: 60_000 });
    assert.doesNotThrow(() => resolveOptions({ dialStaggerMs: 0, dialBackoff: { strategy: 'none' } }));
    assert.throws(() => resolveOptions({ dialStaggerMs: -1 }), /dialStaggerMs/);
    assert.throws(() => resolveOptions({ addressOrder: 'random' as never }), /addressOrder/);
    assert.throws(() => resolveOptions({ pinnedRestartIntensity: { maxRestarts: 0 } }), /pinnedRestartIntensity\.maxRestarts/);
    assert.throws(() => resolveOptions({ pinnedRestartIntensity: { periodMs: 0 } }), /pinnedRestartIntensity\.periodMs/);
    assert.throws(() => resolveOptions({ dialBackoff: { strategy: 'sometimes' } as never }), /dialBackoff\.strategy/);
    assert.throws(() => resolveOptions({ pinnedRetry: { strategy: 'fixed', maxAttempts: 0 } }), /pinnedRetry\.maxAttempts/);
  });

  it('createEngine refuses a missing adapter and a pinned policy that never waits', () => {
    assert.throws(() => createEngine({} as never), /adapter/);
    const network = new MemoryNetwork({ clock: new VirtualClock() });
    assert.throws(() => createEngine({ adapter: network.node('x'), pinnedRetry: { strategy: 'none' } }), /pinnedRetry/);
  });
});
