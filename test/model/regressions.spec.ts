import { strict as assert } from 'node:assert';
import { codes, holder, swarm, track, type Swarm } from '../fixtures/swarm.js';

/**
 * Engine bugs found by the generated tests and the simulator, each reduced to
 * the smallest scenario that shows it. They fail until the engine is fixed;
 * the name says where each one was found.
 */
describe('model: regressions found by the model and the simulator', () => {
  let s: Swarm;

  afterEach(async () => {
    await s.stopAll();
  });

  it('generated path "BLOCK > BLOCK > REQ stream" (walk seed 1132): a request whose new machine closes while starting is answered QUEUE_FULL', async () => {
    s = await swarm();
    const a = await s.add('a', { dialConcurrency: 1, dialQueueLimit: 1 });
    for (const p of ['z1', 'z2', 'b']) {
      s.network.node(p);
      s.network.stallDials(p);
      a.addPeer(p, [s.network.address(p)]);
    }
    const blockers = track([a.openStream('z1', '/x'), a.openStream('z2', '/x')]);
    // The dial slot is taken (z1) and its one waiting place too (z2): b's machine gets
    // DIAL.QUEUE_FULL while it starts, and closes before the engine hands it the request.
    const t = track([a.openStream('b', '/x')]);
    await s.advance(1);
    assert.deepEqual(codes(t.outcomes), { QUEUE_FULL: 1 }, 'the request to b is never answered');
    assert.equal(a.metrics().pendingRequests, 2, 'only the blockers wait');
    await s.advance(60_000);
    await blockers.all;
  });

  it('simulator seed 90 (shrunk to 5 steps): stop() while a pinned peer drains on the remote GOAWAY starts no new dial', async () => {
    s = await swarm({ defaults: { pinnedRetry: { strategy: 'fixed', delayMs: 100 }, drainDeadlineMs: 1_000 } });
    const a = await s.add('a');
    const b = await s.add('b');
    const held = holder();
    b.handle('/hold', held.handler);
    a.addPeer('b', [s.network.address('b')], { pinned: true });
    const t = track([a.openStream('b', '/hold')]);
    await s.advance(10);
    await t.all;
    assert.deepEqual(codes(t.outcomes), { ok: 1 });
    // b stops: it drains, a gets GOAWAY and drains too (remote drain of a pinned peer).
    void b.stop();
    await s.advance(5);
    assert.equal(a.snapshot().peers[0]?.state, 'draining');
    const dials = a.metrics().dials.started;
    // a stops while that drain is under way; then the stream finishes.
    let stopped = false;
    void a.stop().then(() => (stopped = true));
    const stream = t.outcomes[0]!;
    assert.ok(stream.ok);
    stream.stream.close();
    await s.advance(3_000);
    assert.equal(stopped, true, 'stop() returns within its bound');
    assert.equal(a.metrics().dials.started, dials, 'a stopping engine dialled the pinned peer again');
    assert.ok(!s.states('a', 'b').slice(-3).includes('connecting'), `states after stop: ${s.states('a', 'b').join(' > ')}`);
  });

  it('simulator seed 42 (20 peers, shrunk to 5 steps): stop() starts no dial for a peer that waits for a dial slot', async () => {
    s = await swarm();
    const a = await s.add('a', { dialConcurrency: 1 });
    for (const p of ['z1', 'b']) {
      s.network.node(p);
      s.network.stallDials(p);
      a.addPeer(p, [s.network.address(p)]);
    }
    const t = track([a.openStream('z1', '/x'), a.openStream('b', '/x')]);
    await s.advance(1);
    assert.deepEqual(a.metrics().dialQueue, { active: 1, waiting: 1 });
    const dials = a.metrics().dials.started;
    const networkDials = s.network.stats().dials;
    // Shutting z1 down frees the slot; b gets it and dials before its own SHUTDOWN arrives.
    const stopped = a.stop();
    await s.advance(10);
    await stopped;
    await t.all;
    assert.deepEqual(codes(t.outcomes), { ENGINE_STOPPED: 2 });
    assert.equal(a.metrics().dials.started, dials, 'stop() started a dial');
    assert.equal(s.network.stats().dials, networkDials, 'the network saw a dial after stop()');
  });

  it('simulator seed 42 (20 peers): stop() called while start() is still running leaves the engine stopped', async () => {
    s = await swarm();
    const a = await s.add('a');
    const { createEngine } = await import('../../runtime/index.js');
    const c = createEngine({ adapter: s.network.node('c'), clock: s.clock, trace: false });
    c.addPeer('a', [s.network.address('a')], { pinned: true });
    const starting = c.start();
    await c.stop();
    await starting;
    await s.advance(10);
    assert.equal(c.status, 'stopped', 'start() finished after stop() and set the engine running');
    assert.deepEqual(c.snapshot().peers, [], 'a machine was created after stop()');
    assert.equal(s.network.node('c').isListening, false, 'the adapter still listens');
    assert.deepEqual(a.snapshot().peers, []);
    await c.stop();
  });

  it('found while writing the race tests: a lease released after a reconnect does not cancel a newer lease', async () => {
    s = await swarm({ defaults: { idleTimeoutMs: 1_000, pinnedRetry: { strategy: 'fixed', delayMs: 100 } } });
    const a = await s.add('a');
    await s.add('b', { idleTimeoutMs: Infinity });
    a.addPeer('b', [s.network.address('b')], { pinned: true });
    await s.advance(10);
    let releaseOld!: () => void;
    void a.withConnection('b', () => new Promise<void>((resolve) => (releaseOld = resolve)));
    await s.advance(1);
    assert.equal(a.snapshot().peers[0]?.leases, 1);
    // The connection drops; the pinned peer reconnects; a new lease is taken on the new connection.
    s.network.drop('a', 'b');
    await s.advance(200);
    assert.equal(a.snapshot().peers[0]?.state, 'ready');
    let releaseNew!: () => void;
    void a.withConnection('b', () => new Promise<void>((resolve) => (releaseNew = resolve)));
    await s.advance(1);
    assert.equal(a.snapshot().peers[0]?.leases, 1);
    // The holder of the old lease finishes now.
    releaseOld();
    await s.advance(1);
    assert.equal(a.snapshot().peers[0]?.leases, 1, 'the old lease took the new one with it');
    await s.advance(3_000);
    assert.equal(a.snapshot().peers[0]?.state, 'ready', 'a leased connection idled out');
    releaseNew();
  });

  it('found while writing the race tests: a pinned peer stays in the registry after an idle timeout', async () => {
    s = await swarm({ defaults: { idleTimeoutMs: 1_000 } });
    const a = await s.add('a');
    await s.add('b', { idleTimeoutMs: Infinity });
    a.addPeer('b', [s.network.address('b')], { pinned: true });
    await s.advance(10);
    assert.equal(a.snapshot().peers[0]?.state, 'ready');
    await s.advance(5_000);
    const states = s.states('a', 'b');
    assert.ok(a.snapshot().peers.length === 1, `the pinned peer is gone from the registry after ${states.join(' > ')}`);
  });
});
